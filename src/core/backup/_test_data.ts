/**
 * Small builders shared by the backup core tests.
 *
 * @module
 */

import type { Manifest, ManifestEntry } from "./manifest.ts";

/** A snapshot id for test number `n`. */
export function testId(n: number): string {
  return `20240101T000000000Z-${n.toString(16).padStart(8, "0")}`;
}

/** A valid manifest with the given entries. */
export function testManifest(
  n: number,
  entries: ManifestEntry[],
  parent: string | null = null,
): Manifest {
  return {
    format: "lanfree-manifest",
    version: 1,
    id: testId(n),
    kind: "fs",
    source: "/src",
    parent,
    createdMs: n,
    archiveBytes: 1024,
    channelBytes: { storage: 0, network: 0 },
    entries,
    deleted: [],
  };
}

/** A file entry whose data lives in snapshot `n`. */
export function testFile(path: string, n: number, sizeBytes = 1): ManifestEntry {
  return {
    type: "file",
    path,
    mode: 0o644,
    mtimeMs: 1000,
    sizeBytes,
    sha256: "0".repeat(64),
    data: testId(n),
  };
}

/** A directory entry. */
export function testDir(path: string): ManifestEntry {
  return { type: "dir", path, mode: 0o755, mtimeMs: 1000 };
}
