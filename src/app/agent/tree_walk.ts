/**
 * Walks a source directory into snapshot entries: lstat only (symlinks are recorded, never
 * followed), bounded in depth and count, parents before children, names sorted. An entry that
 * cannot be read is reported as skipped with the reason; the walk goes on.
 *
 * @module
 */

import type { SourceEntry } from "../../core/backup/plan.ts";
import { SourceError } from "../errors.ts";

/** Deepest directory nesting walked. */
export const WALK_DEPTH_MAX = 64;
/** Most entries one walk returns. */
export const WALK_ENTRIES_MAX = 1_000_000;
/** How many lstat calls run at once. */
const LSTAT_PARALLEL_MAX = 32;

/** An entry left out of the backup and why. */
export interface SkippedEntry {
  /** The entry's path, relative to the source. */
  readonly path: string;
  /** Why it was left out, in words. */
  readonly reason: string;
}

/** What a walk found. */
export interface WalkResult {
  readonly entries: SourceEntry[];
  readonly skipped: SkippedEntry[];
}

/** Limits of one walk. */
export interface WalkOptions {
  readonly depthMax?: number;
  readonly entriesMax?: number;
}

function reasonOf(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotFound) return "vanished during the backup";
  return error instanceof Error ? error.message : String(error);
}

/** Why a name with U+FFFD in it is skipped: Deno handed back a lossy name it cannot open. */
export const NOT_UTF8_REASON =
  "its name is not valid UTF-8: Deno's directory listing replaces the bad bytes, and no Deno or " +
  "node:fs path API takes raw bytes, so lanfree cannot read it byte-exact (see docs/backup.md)";

async function entryOf(root: string, path: string): Promise<SourceEntry | SkippedEntry> {
  if (path.includes("\ufffd")) {
    // A lossy name stands for bytes that are not UTF-8 unless the file really is named so.
    const exists = await Deno.lstat(`${root}/${path}`).then(() => true, () => false);
    if (!exists) return { path, reason: NOT_UTF8_REASON };
  }
  try {
    const info = await Deno.lstat(`${root}/${path}`);
    const meta = {
      path,
      mode: (info.mode ?? 0o644) & 0o7777,
      mtimeMs: info.mtime?.getTime() ?? 0,
      dev: info.dev,
      ino: info.ino ?? undefined,
      uid: info.uid ?? undefined,
      gid: info.gid ?? undefined,
    };
    if (info.isFile) {
      const linked = (info.nlink ?? 1) > 1 ? { linkKey: `${info.dev}:${info.ino}` } : {};
      return { type: "file", ...meta, sizeBytes: info.size, ...linked };
    }
    if (info.isDirectory) return { type: "dir", ...meta };
    if (info.isSymlink) {
      return { type: "symlink", ...meta, target: await Deno.readLink(`${root}/${path}`) };
    }
    return { path, reason: "not a file, directory or symlink (device, socket or fifo)" };
  } catch (error) {
    return { path, reason: reasonOf(error) };
  }
}

async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of Deno.readDir(dir)) names.push(item.name);
  return names.sort();
}

async function lstatAll(root: string, paths: string[]): Promise<Array<SourceEntry | SkippedEntry>> {
  const out: Array<SourceEntry | SkippedEntry> = [];
  for (let i = 0; i < paths.length; i += LSTAT_PARALLEL_MAX) {
    const batch = paths.slice(i, i + LSTAT_PARALLEL_MAX);
    out.push(...await Promise.all(batch.map((path) => entryOf(root, path))));
  }
  return out;
}

async function checkRoot(root: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(root);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SourceError("not-found", `source ${root} does not exist`);
    }
    throw new SourceError("unreadable", `source ${root}: ${reasonOf(error)}`, { cause: error });
  }
  if (!info.isDirectory) {
    throw new SourceError("not-a-directory", `source ${root} is not a directory`);
  }
}

/**
 * Walks `root` (which must be a directory; a symlink to one is followed for the root only).
 *
 * @param root the directory to back up
 * @param options depth and count limits
 * @returns the entries, parents before children, and the skipped entries with reasons
 * @throws {SourceError} when the root is missing or not a directory, or the tree is too large
 *
 * @example Walking a small tree
 * ```ts
 * import assert from "node:assert/strict";
 * import { walkTree } from "./tree_walk.ts";
 * const root = await Deno.makeTempDir();
 * await Deno.mkdir(`${root}/d`);
 * await Deno.writeTextFile(`${root}/d/-odd name`, "x");
 * const { entries } = await walkTree(root);
 * assert.deepEqual(entries.map((e) => e.path), ["d", "d/-odd name"]);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function walkTree(root: string, options: WalkOptions = {}): Promise<WalkResult> {
  const depthMax = options.depthMax ?? WALK_DEPTH_MAX;
  const entriesMax = options.entriesMax ?? WALK_ENTRIES_MAX;
  await checkRoot(root);
  const result: WalkResult = { entries: [], skipped: [] };
  const visit = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await listNames(dir === "" ? root : `${root}/${dir}`);
    } catch (error) {
      if (dir === "") throw new SourceError("unreadable", `source ${root}: ${reasonOf(error)}`);
      result.skipped.push({ path: dir, reason: `cannot list: ${reasonOf(error)}` });
      return;
    }
    const found = await lstatAll(root, names.map((n) => (dir === "" ? n : `${dir}/${n}`)));
    for (const item of found) {
      if (!("type" in item)) {
        result.skipped.push(item);
        continue;
      }
      if (result.entries.length >= entriesMax) {
        throw new SourceError("too-large", `source ${root} has more than ${entriesMax} entries`);
      }
      if (item.type === "dir" && depth + 1 > depthMax) {
        result.skipped.push({ path: item.path, reason: `deeper than ${depthMax} levels` });
        continue;
      }
      result.entries.push(item);
      if (item.type === "dir") await visit(item.path, depth + 1);
    }
  };
  await visit("", 0);
  return result;
}
