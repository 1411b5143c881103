/**
 * Restore-chain resolution: which entries a restore writes and which snapshot's archive holds
 * each file's bytes. A snapshot's manifest lists the whole tree; each file entry names the
 * snapshot (itself or an ancestor) whose archive holds its data.
 *
 * @module
 */

import type { FileEntry, Manifest, ManifestEntry } from "./manifest.ts";
import { checkEntryPath, isWithin, parentPath } from "./path_rules.ts";

/** Longest parent chain followed (a longer one is treated as corrupt). */
export const CHAIN_LENGTH_MAX = 100_000;

/** The files to read from one snapshot's archive. */
export interface ArchiveReads {
  readonly snapshot: string;
  /** By path: the file entries whose bytes this archive holds. */
  readonly files: ReadonlyMap<string, FileEntry>;
}

/** What a restore writes. */
export interface RestorePlan {
  /** Selected entries, parents before children. */
  readonly entries: readonly ManifestEntry[];
  /** One item per archive to read, oldest first. */
  readonly archives: readonly ArchiveReads[];
}

/** Why a restore cannot be planned. */
export type RestoreProblem = "bad-path" | "path-not-found" | "missing-snapshot" | "bad-chain";

/** The outcome of {@link planRestore}. */
export type RestorePlanResult =
  | { readonly ok: true; readonly plan: RestorePlan }
  | { readonly ok: false; readonly problem: RestoreProblem; readonly message: string };

function fail(problem: RestoreProblem, message: string): RestorePlanResult {
  return { ok: false, problem, message };
}

/** Ids of `manifest` and its ancestors, newest first; an error message if the chain breaks. */
function ancestry(
  manifest: { readonly id: string; readonly parent: string | null },
  known: ReadonlyMap<string, { readonly parent: string | null }>,
): string[] | string {
  const ids: string[] = [manifest.id];
  let parent = manifest.parent;
  while (parent !== null) {
    if (ids.length >= CHAIN_LENGTH_MAX || ids.includes(parent)) {
      return `snapshot ${manifest.id}: its parent chain loops or is longer than ${CHAIN_LENGTH_MAX}`;
    }
    const next = known.get(parent);
    if (next === undefined) return `snapshot ${manifest.id} needs parent ${parent}, not found`;
    ids.push(parent);
    parent = next.parent;
  }
  return ids;
}

/** Entries within `subpath` plus the directories leading to it; all entries without one. */
function selectEntries(manifest: Manifest, subpath: string | undefined): ManifestEntry[] {
  if (subpath === undefined) return [...manifest.entries];
  const ancestors = new Set<string>();
  for (let p = parentPath(subpath); p !== ""; p = parentPath(p)) ancestors.add(p);
  return manifest.entries.filter((e) => isWithin(e.path, subpath) || ancestors.has(e.path));
}

/**
 * Plans a restore of `manifest` (optionally only `subpath`) from the manifests available.
 *
 * @param manifest the snapshot to restore
 * @param known every manifest of the repository, by id (the chain is looked up here)
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
 * const result = planRestore(manifest, new Map());
 * assert(result.ok && result.plan.archives.length === 0);
 * ```
 */
export function planRestore(
  manifest: Manifest,
  known: ReadonlyMap<string, Manifest>,
  subpath?: string,
): RestorePlanResult {
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
  const chain = ancestry(manifest, known);
  if (typeof chain === "string") return fail("missing-snapshot", chain);
  const inChain = new Set(chain);
  const reads = new Map<string, Map<string, FileEntry>>();
  for (const entry of entries) {
    if (entry.type !== "file") continue;
    if (!inChain.has(entry.data)) {
      return fail(
        "bad-chain",
        `file ${
          JSON.stringify(entry.path)
        }: data in ${entry.data}, not an ancestor of ${manifest.id}`,
      );
    }
    let files = reads.get(entry.data);
    if (files === undefined) reads.set(entry.data, files = new Map());
    files.set(entry.path, entry);
  }
  const archives = [...chain].reverse().flatMap((snapshot) => {
    const files = reads.get(snapshot);
    return files === undefined ? [] : [{ snapshot, files }];
  });
  return { ok: true, plan: { entries, archives } };
}

/**
 * Why an incremental backup must not build on `parent`, or `undefined` when it may: the parent
 * must be restorable as far as manifests and archive sizes show. Its chain of manifests must be
 * complete (every ancestor known, no loop), every file must point into that chain, and every
 * archive holding a file of the parent must exist with the size its manifest records.
 *
 * @param parent the manifest the incremental would build on
 * @param known the manifests of its chain that could be read, by id
 * @param archiveSizes the size of each snapshot's archive on disk, `null` when it is missing
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
 * assert.match(chainProblem(parent, new Map([[id, parent]]), new Map([[id, null]]))!, /missing/);
 * ```
 */
export function chainProblem(
  parent: Manifest,
  known: ReadonlyMap<string, Manifest>,
  archiveSizes: ReadonlyMap<string, number | null>,
): string | undefined {
  const referenced = new Map<string, string>();
  for (const entry of parent.entries) {
    if (entry.type === "file" && !referenced.has(entry.data)) {
      referenced.set(entry.data, entry.path);
    }
  }
  return chainProblemOfHeads(parent, known, referenced, archiveSizes);
}

/** What a chain check needs of each manifest of the chain. */
export interface ChainLink {
  readonly id: string;
  readonly parent: string | null;
  readonly archiveBytes: number;
}

/**
 * {@link chainProblem} from what a streamed read of the parent gathers: the snapshots its files
 * read (each with one file's path, for the message) and the heads of its chain.
 *
 * @param parent the head of the manifest the incremental would build on
 * @param known the heads of its chain that could be read, by id
 * @param referenced each snapshot the parent's files read their bytes from, with one such path
 * @param archiveSizes the size of each snapshot's archive on disk, `null` when it is missing
 * @returns the problem in words, naming the snapshot concerned
 */
export function chainProblemOfHeads(
  parent: ChainLink,
  known: ReadonlyMap<string, ChainLink>,
  referenced: ReadonlyMap<string, string>,
  archiveSizes: ReadonlyMap<string, number | null>,
): string | undefined {
  const chain = ancestry(parent, known);
  if (typeof chain === "string") return chain;
  for (const [snapshot, path] of referenced) {
    if (!chain.includes(snapshot)) {
      return `file ${JSON.stringify(path)}: data in ${snapshot}, not an ancestor of ${parent.id}`;
    }
  }
  for (const snapshot of [...chain].reverse()) {
    if (!referenced.has(snapshot)) continue;
    const expected = known.get(snapshot)!.archiveBytes;
    const actual = archiveSizes.get(snapshot);
    if (actual === null || actual === undefined) {
      return `the archive of snapshot ${snapshot} is missing`;
    }
    if (actual !== expected) {
      return `the archive of snapshot ${snapshot} has ${actual} bytes; its manifest records ${expected}`;
    }
  }
  return undefined;
}
