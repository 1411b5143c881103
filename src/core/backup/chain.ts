/**
 * Restore planning: which entries a restore writes and which archive holds each file's bytes.
 * A snapshot's manifest lists the whole tree; each file entry names (`data`) the archive that
 * holds its bytes: the snapshot's own, an ancestor's, a forgotten snapshot's that awaits prune,
 * or one prune wrote when it repacked. The parent chain is history (what an incremental was
 * planned against): restoring follows `data`, never `parent`, so a forgotten parent is no loss.
 *
 * @module
 */

import type { FileEntry, Manifest, ManifestEntry } from "./manifest.ts";
import { checkEntryPath, isWithin, parentPath } from "./path_rules.ts";

/** One tar block: the least a member takes (its header). */
const BLOCK_BYTES = 512;

/** The files to read from one archive. */
export interface ArchiveReads {
  /** The archive (`snapshots/<id>.tar`). */
  readonly snapshot: string;
  /** By path: the file entries whose bytes this archive holds. */
  readonly files: ReadonlyMap<string, FileEntry>;
}

/** What a restore writes. */
export interface RestorePlan {
  /** Selected entries, parents before children. */
  readonly entries: readonly ManifestEntry[];
  /** One item per archive to read, in id order (oldest first). */
  readonly archives: readonly ArchiveReads[];
}

/** Why a restore cannot be planned. */
export type RestoreProblem = "bad-path" | "path-not-found";

/** The outcome of {@link planRestore}. */
export type RestorePlanResult =
  | { readonly ok: true; readonly plan: RestorePlan }
  | { readonly ok: false; readonly problem: RestoreProblem; readonly message: string };

function fail(problem: RestoreProblem, message: string): RestorePlanResult {
  return { ok: false, problem, message };
}

/** Entries within `subpath` plus the directories leading to it; all entries without one. */
function selectEntries(manifest: Manifest, subpath: string | undefined): ManifestEntry[] {
  if (subpath === undefined) return [...manifest.entries];
  const ancestors = new Set<string>();
  for (let p = parentPath(subpath); p !== ""; p = parentPath(p)) ancestors.add(p);
  return manifest.entries.filter((e) => isWithin(e.path, subpath) || ancestors.has(e.path));
}

/**
 * Plans a restore of `manifest` (optionally only `subpath`).
 *
 * @param manifest the snapshot to restore
 * @param subpath a file or directory inside the snapshot to restore alone
 * @returns the entries to write and the archives to read, or the problem
 *
 * @example A snapshot with no files reads no archive
 * ```ts
 * import assert from "node:assert/strict";
 * import { planRestore } from "./chain.ts";
 * import type { Manifest } from "./manifest.ts";
 * const manifest: Manifest = {
 *   format: "lanfree-manifest", version: 1, id: "19700101T000000000Z-00000000", kind: "fs",
 *   source: "/d", parent: null, createdMs: 0, archiveBytes: 1024,
 *   channelBytes: { storage: 0, network: 0 }, deleted: [],
 *   entries: [{ type: "dir", path: "a", mode: 0o755, mtimeMs: 0 }],
 * };
 * const result = planRestore(manifest);
 * assert(result.ok && result.plan.archives.length === 0);
 * ```
 */
export function planRestore(manifest: Manifest, subpath?: string): RestorePlanResult {
  if (subpath !== undefined) {
    const check = checkEntryPath(subpath);
    if (!check.ok) return fail("bad-path", check.message);
  }
  const entries = selectEntries(manifest, subpath);
  if (subpath !== undefined && !entries.some((e) => e.path === subpath)) {
    return fail(
      "path-not-found",
      `snapshot ${manifest.id} has no entry ${JSON.stringify(subpath)}`,
    );
  }
  const reads = new Map<string, Map<string, FileEntry>>();
  for (const entry of entries) {
    if (entry.type !== "file") continue;
    let files = reads.get(entry.data);
    if (files === undefined) reads.set(entry.data, files = new Map());
    files.set(entry.path, entry);
  }
  const archives = [...reads.keys()].sort().map((snapshot) => ({
    snapshot,
    files: reads.get(snapshot)!,
  }));
  return { ok: true, plan: { entries, archives } };
}

/** An archive a snapshot's files point into, as found on disk. */
export interface ArchiveState {
  /** Its size on disk, or null when it is missing. */
  readonly sizeBytes: number | null;
  /**
   * The size its own snapshot's manifest records, or null when it has none (a forgotten
   * snapshot's archive awaiting prune, or one written by prune's repacking).
   */
  readonly recordedBytes: number | null;
}

/** Where the last member of `files` ends at the least (its header and its stored bytes). */
function leastEnd(files: Iterable<FileEntry>): number {
  let end = 0;
  for (const file of files) {
    if (file.offset === undefined) continue;
    const stored = file.hardlink !== undefined ? 0 : file.sparse?.storedBytes ?? file.sizeBytes;
    end = Math.max(end, file.offset + BLOCK_BYTES + stored);
  }
  return end;
}

/**
 * Why an incremental backup must not build on `parent`, or `undefined` when it may: the parent
 * must be restorable as far as archive sizes show. Every archive holding a file of the parent
 * must exist; with the size its own manifest records when it has one, else at least large
 * enough for the members the parent reads from it.
 *
 * @param parent the manifest the incremental would build on
 * @param archives each archive the parent's files point into, by id
 * @returns the problem in words, naming the snapshot concerned
 *
 * @example A parent whose archive is gone
 * ```ts
 * import assert from "node:assert/strict";
 * import { chainProblem } from "./chain.ts";
 * import type { Manifest } from "./manifest.ts";
 * const id = "19700101T000000000Z-00000000";
 * const parent: Manifest = {
 *   format: "lanfree-manifest", version: 1, id, kind: "fs", source: "/d", parent: null,
 *   createdMs: 0, archiveBytes: 2048, channelBytes: { storage: 0, network: 0 }, deleted: [],
 *   entries: [{ type: "file", path: "f", mode: 0o644, mtimeMs: 0, sizeBytes: 1, sha256: "0".repeat(64), data: id }],
 * };
 * const gone = new Map([[id, { sizeBytes: null, recordedBytes: 2048 }]]);
 * assert.match(chainProblem(parent, gone)!, /missing/);
 * ```
 */
export function chainProblem(
  parent: Manifest,
  archives: ReadonlyMap<string, ArchiveState>,
): string | undefined {
  const needs = new ArchiveNeeds();
  for (const entry of parent.entries) if (entry.type === "file") needs.add(entry);
  return needs.problem(archives);
}

/**
 * What {@link chainProblem} checks, gathered a file entry at a time (a manifest read as a
 * stream): the archives the files read from, and how far into each their members reach.
 */
export class ArchiveNeeds {
  readonly #leastEnd = new Map<string, number>();

  /** Counts one file entry of the manifest. */
  add(file: FileEntry): void {
    this.#leastEnd.set(file.data, Math.max(this.#leastEnd.get(file.data) ?? 0, leastEnd([file])));
  }

  /**
   * The needs as plain data (kept in a snapshot's checked record): by archive id, how far into
   * it the manifest's members reach at the least.
   *
   * @returns archive id to least end in bytes, in id order
   */
  toRecord(): Record<string, number> {
    const record: Record<string, number> = {};
    for (const id of this.archives) record[id] = this.#leastEnd.get(id)!;
    return record;
  }

  /**
   * The needs {@link toRecord} gave (the record is checked by its reader).
   *
   * @param record archive id to least end in bytes
   * @returns the needs
   */
  static fromRecord(record: Readonly<Record<string, number>>): ArchiveNeeds {
    const needs = new ArchiveNeeds();
    for (const [id, end] of Object.entries(record)) needs.#leastEnd.set(id, end);
    return needs;
  }

  /** The archives the files read from, by id, in id order. */
  get archives(): string[] {
    return [...this.#leastEnd.keys()].sort();
  }

  /**
   * What is wrong with the archives as found on disk, or `undefined` when each is there with
   * its recorded size (where its manifest records one) and reaches past its members.
   *
   * @param archives each archive's state, by id
   * @returns the problem in words, naming the snapshot concerned
   */
  problem(archives: ReadonlyMap<string, ArchiveState>): string | undefined {
    for (const snapshot of this.archives) {
      const state = archives.get(snapshot);
      if (state === undefined || state.sizeBytes === null) {
        return `the archive of snapshot ${snapshot} is missing`;
      }
      const { sizeBytes, recordedBytes } = state;
      if (recordedBytes !== null && sizeBytes !== recordedBytes) {
        return `the archive of snapshot ${snapshot} has ${sizeBytes} bytes; its manifest records ${recordedBytes}`;
      }
      const least = this.#leastEnd.get(snapshot)!;
      if (sizeBytes < least) {
        return `the archive of snapshot ${snapshot} has ${sizeBytes} bytes; its members need at least ${least}`;
      }
    }
    return undefined;
  }
}
