/**
 * A snapshot's checked record (`snapshots/<id>.checked.json`), written right after a backup's
 * commit: the manifest file's SHA-256 and size as the commit wrote them (every entry of it
 * checked on the way in, the tree rule and hard links included), its entry count, and the
 * chain facts an incremental needs (by archive, how far into it the manifest's members reach).
 *
 * `chooseParent` trusts a manifest's entries without reading them again only when the file
 * still hashes to what the record names; any difference (a manifest changed, cut off, rewritten
 * by prune or consolidate, a record cut off or malformed) means no record, and the full check
 * runs as before. The archives themselves are checked against the disk either way. A missing
 * record (an older repository, a crash between the commit and the record) is the same.
 * `restoreSnapshot` trusts a record the same way: with one, it skips its checking pass.
 *
 * A record goes with what it vouches for, under the writer's lock: forget removes it just
 * before the manifest (killed in between, the manifest stays without a record), prune removes it just before it renames a rewritten manifest over the old one, and
 * consolidate before its archive swap (after which a killed consolidate is rolled forward);
 * killed in between, the old manifest stays without a record and the full check runs. Prune
 * removes every record whose manifest is gone (what an older version of lanfree, which
 * removed the manifest first, could leave).
 *
 * Prune and consolidate write no fresh record for a manifest they rewrote, though they check it
 * whole (`parseManifest`: schema and tree rule): they write it as one JSON document, not in the
 * line layout a record implies (an incremental sends a recorded parent's lines on as they
 * are), so the next incremental checks it in full once.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ArchiveNeeds } from "../../core/backup/chain.ts";
import { SNAPSHOT_ID_PATTERN } from "../../core/backup/manifest.ts";
import { listSnapshotIds, repoPaths, type Repository } from "./repository.ts";

/** The record's format name. */
export const CHECKED_RECORD_FORMAT = "lanfree-checked";
/** The record's version. */
export const CHECKED_RECORD_VERSION = 1;
/** A record larger than this is not read (one archive id and number per line: 50 bytes). */
const RECORD_BYTES_MAX = 16 << 20;
/** Bytes hashed per read. */
const HASH_READ_BYTES = 1 << 20;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What a checked record says. */
export interface CheckedRecord {
  readonly format: typeof CHECKED_RECORD_FORMAT;
  readonly version: typeof CHECKED_RECORD_VERSION;
  /** The snapshot whose manifest was checked. */
  readonly id: string;
  /** The manifest file as written: its SHA-256 (hex) and size. */
  readonly manifest: { readonly sha256: string; readonly bytes: number };
  /** Entries in the manifest. */
  readonly entries: number;
  /** By archive id: the least size its members need (`ArchiveNeeds.toRecord`). */
  readonly archives: Readonly<Record<string, number>>;
  /**
   * Files whose member has no offset (kept from a version-1 parent: restored by name, in
   * phases). Absent in records written before it was kept: a restore then checks in full.
   */
  readonly filesWithoutOffset?: number;
}

/**
 * Writes a snapshot's checked record (after its commit point). A failure is left to the
 * caller: the snapshot is committed either way, and without a record the next incremental
 * checks the manifest in full. The record is a cache checked on every read, not part of the
 * commit protocol: it is written beside the repository's write seam (`repo_fs.ts`), neither
 * synced nor kept by a crash (a record lost, cut off or left empty is simply not used).
 *
 * @param repo the repository
 * @param record what the commit checked
 */
export async function writeCheckedRecord(repo: Repository, record: CheckedRecord): Promise<void> {
  const temp = `${repoPaths.tmp(repo)}/${record.id}.checked.json.partial`;
  await Deno.writeTextFile(temp, JSON.stringify(record), { createNew: true });
  await Deno.rename(temp, repoPaths.checked(repo, record.id));
}

/** The name of a checked record in `snapshots/`, after the snapshot's id. */
const RECORD_SUFFIX = ".checked.json";

/**
 * Removes a snapshot's checked record, if it has one. Called under the writer's lock before its
 * manifest is rewritten or removed: a record of a manifest that is no longer there is junk.
 *
 * @param repo the repository
 * @param id the snapshot
 * @throws what removing the file throws, but for a record that is not there
 */
export async function removeCheckedRecord(repo: Repository, id: string): Promise<void> {
  try {
    await Deno.remove(repoPaths.checked(repo, id));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * Removes every checked record whose snapshot has no manifest (under the writer's lock: only a
 * writer removes manifests, and a backup writes its record after its manifest).
 *
 * @param repo the repository
 * @returns the snapshots whose records were removed, sorted
 */
export async function removeOrphanedRecords(repo: Repository): Promise<string[]> {
  const manifests = new Set(await listSnapshotIds(repo));
  const orphaned: string[] = [];
  for await (const item of Deno.readDir(repoPaths.snapshots(repo))) {
    const id = item.name.endsWith(RECORD_SUFFIX) ? item.name.slice(0, -RECORD_SUFFIX.length) : "";
    if (item.isFile && SNAPSHOT_ID_PATTERN.test(id) && !manifests.has(id)) orphaned.push(id);
  }
  for (const id of orphaned) await removeCheckedRecord(repo, id);
  return orphaned.sort();
}

/** The record's fields when they have the record's shape, else undefined. */
function recordShape(value: unknown, id: string): CheckedRecord | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const record = value as Partial<CheckedRecord>;
  const manifest = record.manifest;
  const count = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
  if (
    record.format !== CHECKED_RECORD_FORMAT || record.version !== CHECKED_RECORD_VERSION ||
    record.id !== id || typeof manifest !== "object" || manifest === null ||
    typeof manifest.sha256 !== "string" || !SHA256_HEX.test(manifest.sha256) ||
    !count(manifest.bytes) || !count(record.entries) ||
    typeof record.archives !== "object" || record.archives === null ||
    (record.filesWithoutOffset !== undefined && !count(record.filesWithoutOffset))
  ) return undefined;
  for (const [archive, end] of Object.entries(record.archives)) {
    if (!SNAPSHOT_ID_PATTERN.test(archive) || !count(end)) return undefined;
  }
  return record as CheckedRecord;
}

/**
 * The SHA-256 (hex) of a file, read in bounded pieces.
 *
 * @param path the file
 * @returns its hash
 */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(HASH_READ_BYTES);
    // Bounded by the file's size: each turn reads at least one byte or ends.
    for (let n = await file.read(buffer); n !== null; n = await file.read(buffer)) {
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

/**
 * A snapshot's checked record when it is there, well formed, and the manifest file still has
 * the size and SHA-256 it names (every entry of the file was checked at its commit); else
 * undefined (the caller checks the manifest in full).
 *
 * @param repo the repository
 * @param id the snapshot
 * @returns the record that vouches for the manifest, or undefined
 */
export async function vouchingRecord(
  repo: Repository,
  id: string,
): Promise<CheckedRecord | undefined> {
  const path = repoPaths.checked(repo, id);
  try {
    const size = (await Deno.stat(path)).size;
    if (size > RECORD_BYTES_MAX) return undefined;
    const record = recordShape(JSON.parse(await Deno.readTextFile(path)), id);
    if (record === undefined) return undefined;
    const manifestPath = repoPaths.manifest(repo, id);
    if ((await Deno.stat(manifestPath)).size !== record.manifest.bytes) return undefined;
    if ((await fileSha256(manifestPath)) !== record.manifest.sha256) return undefined;
    return record;
  } catch {
    return undefined; // no record, or one that cannot be read: the full check runs
  }
}

/**
 * The chain facts of a snapshot's manifest from its checked record ({@link vouchingRecord}),
 * or undefined (the caller checks the manifest in full).
 *
 * @param repo the repository
 * @param id the snapshot
 * @returns what the record vouches for, or undefined
 */
export async function recordedNeeds(
  repo: Repository,
  id: string,
): Promise<{ needs: ArchiveNeeds; entries: number } | undefined> {
  const record = await vouchingRecord(repo, id);
  if (record === undefined) return undefined;
  return { needs: ArchiveNeeds.fromRecord(record.archives), entries: record.entries };
}
