/**
 * Snapshot planning: compare the entries found now with the parent snapshot's manifest and
 * decide what needs data in the new archive, what is unchanged (its bytes stay in an earlier
 * archive) and what was deleted. Then build the new manifest from the plan and the pack results.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import {
  type ChannelBytes,
  type Manifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestEntry,
} from "./manifest.ts";

/** One entry as found in the source, before hashing. */
export type SourceEntry =
  | { readonly type: "file"; readonly path: string; readonly sizeBytes: number } & SourceMeta
  | { readonly type: "dir"; readonly path: string } & SourceMeta
  | { readonly type: "symlink"; readonly path: string; readonly target: string } & SourceMeta;

/** Metadata every source entry carries. */
export interface SourceMeta {
  readonly mode: number;
  readonly mtimeMs: number;
  /** Device and inode the walk saw: packing opens only that file under this path. */
  readonly dev?: number;
  readonly ino?: number;
}

/** What the new snapshot must do. */
export interface SnapshotPlan {
  /** New or changed entries, in source order: these go into the new archive. */
  readonly changed: readonly SourceEntry[];
  /** Entries identical to the parent's: copied from the parent manifest, bytes stay there. */
  readonly unchanged: readonly ManifestEntry[];
  /** Paths of the parent that no longer exist. */
  readonly deleted: readonly string[];
}

/** Whether a source entry still matches its parent manifest entry (type, size, mode, mtime). */
function sameEntry(now: SourceEntry, before: ManifestEntry): boolean {
  if (now.type !== before.type || now.mode !== before.mode || now.mtimeMs !== before.mtimeMs) {
    return false;
  }
  if (now.type === "file" && before.type === "file") return now.sizeBytes === before.sizeBytes;
  if (now.type === "symlink" && before.type === "symlink") return now.target === before.target;
  return now.type === "dir";
}

/**
 * Plans a snapshot. Without a parent every entry is changed (a full snapshot).
 *
 * @param current the entries found in the source, parents before children
 * @param parent the latest manifest of the same source, for an incremental snapshot
 * @returns changed, unchanged and deleted entries
 *
 * @example A full snapshot changes everything
 * ```ts
 * import assert from "node:assert/strict";
 * import { planSnapshot } from "./plan.ts";
 * const plan = planSnapshot([{ type: "dir", path: "a", mode: 0o755, mtimeMs: 0 }]);
 * assert(plan.changed.length === 1 && plan.deleted.length === 0);
 * ```
 */
export function planSnapshot(
  current: readonly SourceEntry[],
  parent?: Manifest | null,
): SnapshotPlan {
  const before = new Map<string, ManifestEntry>();
  for (const entry of parent?.entries ?? []) before.set(entry.path, entry);
  const changed: SourceEntry[] = [];
  const unchanged: ManifestEntry[] = [];
  const seen = new Set<string>();
  for (const entry of current) {
    invariant(!seen.has(entry.path), `source entry ${entry.path} is listed once`);
    seen.add(entry.path);
    const old = before.get(entry.path);
    if (old !== undefined && sameEntry(entry, old)) unchanged.push(old);
    else changed.push(entry);
  }
  const deleted = [...before.keys()].filter((path) => !seen.has(path));
  return { changed, unchanged, deleted };
}

/** What packing found out about one file: its hash and the bytes actually archived. */
export interface PackedFile {
  readonly sha256: string;
  readonly sizeBytes: number;
}

/** Everything {@link buildManifest} needs besides the plan. */
export interface ManifestFacts {
  readonly id: string;
  readonly kind: "fs" | "db";
  readonly source: string;
  readonly parent: Manifest | null;
  readonly createdMs: number;
  readonly archiveBytes: number;
  readonly channelBytes: ChannelBytes;
  /** Hashes of the changed files that were archived; a changed file missing here was skipped. */
  readonly packed: ReadonlyMap<string, PackedFile>;
}

/**
 * Builds the new manifest: unchanged entries keep their data reference, changed files point at
 * the new snapshot, skipped files are left out (with their subtree gone only if a directory was
 * skipped, which the walk already did), and deletions are relative to the parent.
 *
 * @param plan the plan the archive was packed from
 * @param facts ids, times, counters and pack results
 * @returns the manifest (validate it with `parseManifest` before trusting it elsewhere)
 *
 * @example An empty source
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildManifest, planSnapshot } from "./plan.ts";
 * const manifest = buildManifest(planSnapshot([]), {
 *   id: "19700101T000000000Z-00000000", kind: "fs", source: "/data", parent: null,
 *   createdMs: 0, archiveBytes: 1024, channelBytes: { storage: 1024, network: 0 },
 *   packed: new Map(),
 * });
 * assert(manifest.entries.length === 0);
 * ```
 */
export function buildManifest(plan: SnapshotPlan, facts: ManifestFacts): Manifest {
  const entries: ManifestEntry[] = [...plan.unchanged];
  for (const entry of plan.changed) {
    const base = { path: entry.path, mode: entry.mode, mtimeMs: entry.mtimeMs };
    if (entry.type === "dir") entries.push({ type: "dir", ...base });
    else if (entry.type === "symlink") {
      entries.push({ type: "symlink", ...base, target: entry.target });
    } else {
      const packed = facts.packed.get(entry.path);
      if (packed === undefined) continue;
      entries.push({ type: "file", ...base, ...packed, data: facts.id });
    }
  }
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const kept = new Set(entries.map((entry) => entry.path));
  const deleted = (facts.parent?.entries ?? []).map((e) => e.path).filter((p) => !kept.has(p));
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    id: facts.id,
    kind: facts.kind,
    source: facts.source,
    parent: facts.parent?.id ?? null,
    createdMs: facts.createdMs,
    archiveBytes: facts.archiveBytes,
    channelBytes: facts.channelBytes,
    entries,
    deleted,
  };
}
