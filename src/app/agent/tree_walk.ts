/**
 * Walks a source directory into snapshot entries, in path order (the manifest's and the
 * archive's order): symlinks are recorded, never followed; bounded in depth and count. An entry
 * that cannot be read is reported as skipped with the reason; the walk goes on.
 *
 * With the native file layer (FFI) the walk holds each directory open and works relative to
 * it: names are read as raw bytes (`getdents64`; a name that is not UTF-8 is kept byte-exact),
 * each entry gets one `statx` relative to its directory's descriptor, a subdirectory is opened
 * with `O_NOFOLLOW | O_DIRECTORY` and must be the directory the `statx` saw (device and inode),
 * and a directory's extended attributes are read through its descriptor. No path is resolved
 * twice, and nothing is followed out of the tree. Without FFI it falls back to Deno's path
 * APIs (`lstat` per entry), which cannot read names that are not UTF-8.
 *
 * @module
 */

import type { SourceEntry } from "../../core/backup/plan.ts";
import { base64Of } from "../../core/backup/plan.ts";
import { EntryTable } from "../../core/backup/entry_table.ts";
import { pathFromBytes } from "../../core/backup/path_rules.ts";
import {
  AT_FDCWD,
  close,
  getXattr,
  listXattrs,
  type NativeFsError,
  type NativeStat,
  O,
  openAt,
  readDirNames,
  readLinkAt,
  statAt,
  statFd,
} from "../../adapters/fs_native.ts";
import { SourceError } from "../errors.ts";
import { useNativeFs, Yielder } from "../_file_side.ts";

/** Deepest directory nesting walked. */
export const WALK_DEPTH_MAX = 64;
/** Most entries one walk returns (see `MANIFEST_ENTRIES_MAX` for what bounds it). */
export const WALK_ENTRIES_MAX = 10_000_000;
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
  /** Paths relative to the root left out with everything below them (the repository). */
  readonly exclude?: readonly string[];
  /** False walks by path even when the native layer is there (tests of the fallback). */
  readonly native?: boolean;
}

/** What a walk found, in the compact form the plan and packing work on. */
export interface WalkedTree {
  /** The entries, in path order. */
  readonly table: EntryTable;
  /** Entries left out, with reasons, in path order. */
  readonly skipped: SkippedEntry[];
  /** Whether the native file layer did the walk. */
  readonly native: boolean;
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
 * @param options depth and count limits, exclusions
 * @returns the entries, in path order (parents before children), and the skipped entries
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
  const { table, skipped } = await walkSource(root, options);
  const entries: SourceEntry[] = [];
  for (let i = 0; i < table.count; i++) entries.push(table.source(i));
  return { entries, skipped };
}

/**
 * Walks `root` into an {@link EntryTable} (natively when FFI is allowed, else by path).
 *
 * @param root the directory to back up
 * @param options depth and count limits, exclusions, the layer
 * @returns the table, the skipped entries and which layer walked
 * @throws {SourceError} when the root is missing or not a directory, or the tree is too large
 */
export async function walkSource(root: string, options: WalkOptions = {}): Promise<WalkedTree> {
  const limits = {
    depthMax: options.depthMax ?? WALK_DEPTH_MAX,
    entriesMax: options.entriesMax ?? WALK_ENTRIES_MAX,
    exclude: new Set(options.exclude ?? []),
  };
  const native = useNativeFs(options.native ?? true);
  const skipped: SkippedEntry[] = [];
  const table = native
    ? await walkNative(root, limits, skipped)
    : await walkByPath(root, limits, skipped);
  skipped.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { table, skipped, native };
}

interface Limits {
  readonly depthMax: number;
  readonly entriesMax: number;
  readonly exclude: ReadonlySet<string>;
}

function tooLarge(root: string, limits: Limits): SourceError {
  return new SourceError("too-large", `source ${root} has more than ${limits.entriesMax} entries`);
}

/** The old walk, by path with Deno's APIs; its entries are put in path order at the end. */
async function walkByPath(root: string, limits: Limits, skipped: SkippedEntry[]) {
  await checkRoot(root);
  const entries: SourceEntry[] = [];
  const visit = async (dir: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await listNames(dir === "" ? root : `${root}/${dir}`);
    } catch (error) {
      if (dir === "") throw new SourceError("unreadable", `source ${root}: ${reasonOf(error)}`);
      skipped.push({ path: dir, reason: `cannot list: ${reasonOf(error)}` });
      return;
    }
    const paths = names.map((n) => (dir === "" ? n : `${dir}/${n}`));
    const found = await lstatAll(root, paths.filter((p) => !limits.exclude.has(p)));
    for (const item of found) {
      if (!("type" in item)) {
        skipped.push(item);
        continue;
      }
      if (entries.length >= limits.entriesMax) throw tooLarge(root, limits);
      if (item.type === "dir" && depth + 1 > limits.depthMax) {
        skipped.push({ path: item.path, reason: `deeper than ${limits.depthMax} levels` });
        continue;
      }
      entries.push(item);
      if (item.type === "dir") await visit(item.path, depth + 1);
    }
  };
  await visit("", 0);
  entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const table = new EntryTable();
  for (const entry of entries) table.add(entry);
  return table;
}

function nativeReason(error: unknown): string {
  const code = (error as Partial<NativeFsError>).code;
  if (code === "ENOENT" || code === "ENOTDIR") return "vanished during the backup";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** A name of a directory being walked: its entry, or (for a directory) its subtree. */
interface Item {
  /** Sort key: the name, or the name and a slash for the subtree (so path order results). */
  readonly key: string;
  /** The name. */
  readonly name: string;
  readonly raw: Uint8Array;
  readonly stat: NativeStat;
  /** A subtree's directory entry (whose index it descends into); undefined for an entry. */
  readonly entry: Item | undefined;
  /** The table index the entry was added at, -1 until then (or when it was left out). */
  index: number;
}

const UNSUPPORTED_REASON = "not a file, directory or symlink (device, socket or fifo)";
/** Entries walked between two looks at the clock (the event loop gets a turn every slice). */
const YIELD_CHECK_EVERY = 64;

async function walkNative(root: string, limits: Limits, skipped: SkippedEntry[]) {
  const table = new EntryTable();
  const yielder = new Yielder();
  let rootFd: number;
  try {
    rootFd = openAt(AT_FDCWD, root, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
  } catch (error) {
    const code = (error as Partial<NativeFsError>).code;
    if (code === "ENOENT") throw new SourceError("not-found", `source ${root} does not exist`);
    if (code === "ENOTDIR") {
      throw new SourceError("not-a-directory", `source ${root} is not a directory`);
    }
    throw new SourceError("unreadable", `source ${root}: ${nativeReason(error)}`);
  }
  const context = { root, limits, skipped, table, yielder, steps: 0 };
  try {
    await visitNative(context, rootFd, "", -1, 0);
  } finally {
    close(rootFd);
  }
  return table;
}

interface WalkContext {
  readonly root: string;
  readonly limits: Limits;
  readonly skipped: SkippedEntry[];
  readonly table: EntryTable;
  readonly yielder: Yielder;
  /** Entries walked so far (to look at the clock every {@link YIELD_CHECK_EVERY}). */
  steps: number;
}

function childPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

function byKey(a: Item, b: Item): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** The items of one directory, sorted so that emitting them in turn gives path order. */
function itemsOf(context: WalkContext, dirFd: number, dir: string, depth: number): Item[] {
  let names: Uint8Array[];
  try {
    names = readDirNames(dirFd, dir === "" ? context.root : dir);
  } catch (error) {
    const reason = nativeReason(error);
    if (dir === "") throw new SourceError("unreadable", `source ${context.root}: ${reason}`);
    context.skipped.push({ path: dir, reason: `cannot list: ${reason}` });
    return [];
  }
  const { exclude, depthMax } = context.limits;
  const items: Item[] = [];
  for (const raw of names) {
    const name = pathFromBytes(raw);
    if (exclude.size > 0 && exclude.has(childPath(dir, name))) continue;
    let stat: NativeStat;
    try {
      stat = statAt(dirFd, raw);
    } catch (error) {
      context.skipped.push({ path: childPath(dir, name), reason: nativeReason(error) });
      continue;
    }
    if (stat.type !== "file" && stat.type !== "dir" && stat.type !== "symlink") {
      context.skipped.push({ path: childPath(dir, name), reason: UNSUPPORTED_REASON });
    } else if (stat.type === "dir" && depth + 1 > depthMax) {
      const path = childPath(dir, name);
      context.skipped.push({ path, reason: `deeper than ${depthMax} levels` });
    } else {
      const item: Item = { key: name, name, raw, stat, entry: undefined, index: -1 };
      items.push(item);
      if (stat.type === "dir") {
        items.push({ key: `${name}/`, name, raw, stat, entry: item, index: -1 });
      }
    }
  }
  return items.sort(byKey);
}

async function visitNative(
  context: WalkContext,
  dirFd: number,
  dir: string,
  dirIndex: number,
  depth: number,
) {
  for (const item of itemsOf(context, dirFd, dir, depth)) {
    if (++context.steps % YIELD_CHECK_EVERY === 0) await context.yielder.maybe();
    if (item.entry === undefined) {
      item.index = addNative(context, dirFd, dir, dirIndex, item);
      continue;
    }
    const index = item.entry.index;
    if (index < 0) continue;
    const path = childPath(dir, item.name);
    let child: number;
    try {
      child = openAt(dirFd, item.raw, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
    } catch (error) {
      context.skipped.push({ path, reason: `cannot list: ${nativeReason(error)}` });
      continue;
    }
    try {
      const opened = statFd(child);
      if (opened.dev !== item.stat.dev || opened.ino !== item.stat.ino) {
        context.skipped.push({ path, reason: "cannot list: it was replaced during the backup" });
        continue;
      }
      const xattrs = readXattrs(child, path, context.skipped);
      if (xattrs !== undefined) context.table.extrasOf(index).xattrs = xattrs;
      await visitNative(context, child, path, index, depth + 1);
    } finally {
      close(child);
    }
  }
}

/**
 * Adds one entry to the table (-1 when left out); a symlink's target is read here, relative to
 * its directory.
 */
function addNative(
  context: WalkContext,
  dirFd: number,
  dir: string,
  dirIndex: number,
  item: Item,
): number {
  const table = context.table;
  if (table.count >= context.limits.entriesMax) throw tooLarge(context.root, context.limits);
  const { stat, name } = item;
  if (stat.type === "file" || stat.type === "dir") {
    return table.addChild(dirIndex, name, stat.type, stat);
  }
  try {
    const target = pathFromBytes(readLinkAt(dirFd, item.raw));
    return table.addChild(dirIndex, name, "symlink", stat, target);
  } catch (error) {
    context.skipped.push({ path: childPath(dir, name), reason: nativeReason(error) });
    return -1;
  }
}

/**
 * The extended attributes of an open file or directory, names as strings (bytes that are not
 * UTF-8 as U+DC80..U+DCFF), values in base64; undefined when it has none. One that cannot be
 * read is reported (the entry is kept without it).
 *
 * @param fd the open file or directory
 * @param path its entry path, for the report
 * @param skipped where an unreadable attribute is reported
 * @returns the attributes, sorted by name
 */
export function readXattrs(
  fd: number,
  path: string,
  skipped: SkippedEntry[],
): Record<string, string> | undefined {
  let names: Uint8Array[];
  try {
    names = listXattrs(fd);
  } catch (error) {
    skipped.push({
      path,
      reason: `its extended attributes cannot be read: ${nativeReason(error)}`,
    });
    return undefined;
  }
  if (names.length === 0) return undefined;
  const record: Record<string, string> = {};
  for (const raw of names.sort(compareBytes)) {
    const name = pathFromBytes(raw);
    try {
      const value = getXattr(fd, raw);
      if (value !== null) record[name] = base64Of(value);
    } catch (error) {
      skipped.push({
        path,
        reason: `extended attribute ${name} cannot be read: ${nativeReason(error)}`,
      });
    }
  }
  return Object.keys(record).length === 0 ? undefined : record;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
