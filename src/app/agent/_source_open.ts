/**
 * Opens the files of a source for packing, only if each is still the regular file the walk saw.
 *
 * **Native** ({@link NativeSourceFiles}): the directories of the path being packed are held
 * open, each opened relative to its parent with `O_RDONLY | O_DIRECTORY | O_NOFOLLOW` and
 * checked against the walk's device and inode once (not once per file); a file is opened
 * relative to its directory with a real `O_NOFOLLOW | O_NONBLOCK` (a symlink swapped in fails
 * with ELOOP, a FIFO never blocks), then its `statx` must show a regular file with the walk's
 * device and inode. Reads are `pread` straight into the caller's buffer; holes are found with
 * `SEEK_DATA`/`SEEK_HOLE`; extended attributes are read through the descriptor.
 *
 * **By path** ({@link openSourceFile}, without FFI): `node:fs` with `O_NOFOLLOW | O_NONBLOCK`
 * (Deno's own `open` takes no custom flags), then the same device, inode and type check.
 * Under Deno's granular permissions Deno resolves symlinks itself before the open, so there the
 * check after the open is what refuses a swapped-in link.
 *
 * @module
 */

import fs from "node:fs";
import type { FileHandle } from "node:fs/promises";
import {
  close,
  type NativeFsError,
  type NativeStat,
  O,
  openAt,
  pread,
  seekData,
  seekHole,
  statFd,
} from "../../adapters/fs_native.ts";
import { parentPath, pathToBytes } from "../../core/backup/path_rules.ts";
import type { SparseMap } from "../repository/_tar_member.ts";
import { readXattrs, type SkippedEntry } from "./tree_walk.ts";

/** Linux open(2) flags by architecture (asm-generic vs x86 values). */
const LINUX_FLAGS: Record<string, { noFollow: number; nonBlock: number }> = {
  x86_64: { noFollow: 0o400000, nonBlock: 0o4000 },
  aarch64: { noFollow: 0o100000, nonBlock: 0o4000 },
};

function readFlags(): number {
  const linux = Deno.build.os === "linux" ? LINUX_FLAGS[Deno.build.arch] : undefined;
  const noFollow = linux?.noFollow ?? fs.constants.O_NOFOLLOW;
  const nonBlock = linux?.nonBlock ?? fs.constants.O_NONBLOCK;
  return fs.constants.O_RDONLY | noFollow | nonBlock;
}

/** Flags of every source open by path: read only, no symlink followed, never blocking. */
export const SOURCE_OPEN_FLAGS: number = readFlags();

/** What the walk saw of a file: its device and inode (absent for files lanfree made itself). */
export interface SeenFile {
  readonly path: string;
  readonly dev?: number;
  readonly ino?: number;
}

/** An open source file, whichever layer opened it. */
export interface SourceFile {
  /** Its size now. */
  readonly sizeBytes: number;
  /** Reads up to `into.length` bytes at `position`; 0 at the end. */
  read(into: Uint8Array, position: number): number | Promise<number>;
  /** The same read, synchronous: only a file of the native layer has it. */
  readNow?(into: Uint8Array, position: number): number;
  /**
   * Its data segments when it has holes (GNU tar's sparse map: data runs, then a final empty
   * run at the size when it ends in a hole), or null when it is stored whole.
   */
  dataMap(): SparseMap | null;
  /** Its extended attributes (names to base64), reporting any it cannot read. */
  xattrs(path: string, skipped: SkippedEntry[]): Record<string, string> | undefined;
  close(): void | Promise<void>;
}

/** An open source file, or why it is skipped. */
export type SourceOpen =
  | { readonly ok: true; readonly file: SourceFile }
  | { readonly ok: false; readonly reason: string };

const SYMLINK_NOW = "changed type during the backup (now a symlink)";
const REPLACED = "was replaced by another file during the backup";

function typeOf(stat: fs.Stats): string {
  if (stat.isFIFO()) return "fifo";
  if (stat.isDirectory()) return "directory";
  if (stat.isSocket()) return "socket";
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return "device";
  return "special file";
}

function reasonOfOpenError(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ELOOP") return SYMLINK_NOW;
  if (code === "ENXIO") return "changed type during the backup (now a socket)";
  if (code === "ENOENT" || code === "ENOTDIR") return "vanished during the backup";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** Most segments of a sparse map (GNU tar reads more, but a map this long is no longer sparse). */
const DATA_SEGMENTS_MAX = 1 << 16;

/** A file opened by the native layer. */
class NativeSourceFile implements SourceFile {
  constructor(readonly fd: number, readonly stat: NativeStat) {}

  get sizeBytes(): number {
    return this.stat.size;
  }

  read(into: Uint8Array, position: number): number {
    return this.readNow(into, position);
  }

  readNow(into: Uint8Array, position: number): number {
    return pread(this.fd, into, position);
  }

  dataMap(): SparseMap | null {
    const size = this.stat.size;
    if (size === 0 || this.stat.allocatedBytes >= size) return null;
    const map: Array<[number, number]> = [];
    // Bounded: each turn moves past one data segment, and at most DATA_SEGMENTS_MAX of them.
    for (let at = 0; at < size && map.length < DATA_SEGMENTS_MAX;) {
      const data = seekData(this.fd, at);
      if (data === null || data >= size) break;
      const hole = Math.min(seekHole(this.fd, data), size);
      map.push([data, hole - data]);
      at = hole;
    }
    if (map.length >= DATA_SEGMENTS_MAX) return null;
    const stored = map.reduce((sum, [, n]) => sum + n, 0);
    if (stored >= size) return null; // no hole after all (written since the walk)
    const last = map[map.length - 1];
    if (last === undefined || last[0] + last[1] < size) map.push([size, 0]);
    return map;
  }

  xattrs(path: string, skipped: SkippedEntry[]): Record<string, string> | undefined {
    return readXattrs(this.fd, path, skipped);
  }

  close(): void {
    close(this.fd);
  }
}

/** A directory held open while its entries are packed. */
interface HeldDir {
  readonly path: string;
  readonly fd: number;
}

/**
 * Opens source files relative to held directory descriptors: the directories of the path
 * being packed stay open (a stack that follows the path order of the entries), each checked
 * once against the walk's identity.
 */
export class NativeSourceFiles {
  readonly #held: HeldDir[];
  /** Directories that could not be opened as the walk saw them, and why. */
  readonly #refused = new Map<string, string>();

  /**
   * @param rootFd the source root, open (closed by {@link close})
   * @param identity the walk's device and inode of a directory of the source, by path
   */
  constructor(
    rootFd: number,
    readonly identity: (path: string) => { dev: number; ino: number } | undefined,
  ) {
    this.#held = [{ path: "", fd: rootFd }];
  }

  /**
   * Opens `seen.path` for reading if it is the regular file the walk saw.
   *
   * @param seen the entry path and the walk's device and inode
   * @returns the open file, or why it is skipped
   */
  open(seen: SeenFile): SourceOpen {
    const dir = this.#dirOf(parentPath(seen.path));
    if (typeof dir === "string") return { ok: false, reason: dir };
    const name = seen.path.slice(seen.path.lastIndexOf("/") + 1);
    let fd: number;
    try {
      fd = openAt(dir, pathToBytes(name), O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
    } catch (error) {
      return { ok: false, reason: reasonOfOpenError(error) };
    }
    let stat: NativeStat;
    try {
      stat = statFd(fd);
    } catch (error) {
      close(fd);
      return { ok: false, reason: reasonOfOpenError(error) };
    }
    const reason = stat.type !== "file"
      ? `changed type during the backup (now a ${stat.type === "dir" ? "directory" : stat.type})`
      : seen.ino !== undefined && (stat.ino !== seen.ino || stat.dev !== seen.dev)
      ? REPLACED
      : undefined;
    if (reason !== undefined) {
      close(fd);
      return { ok: false, reason };
    }
    return { ok: true, file: new NativeSourceFile(fd, stat) };
  }

  /** The descriptor of directory `path`, opening what is missing; a string says why not. */
  #dirOf(path: string): number | string {
    // Bounded by the stack's depth: each turn pops one directory that is not an ancestor.
    while (!isAncestorOrSelf(this.#held[this.#held.length - 1]!.path, path)) {
      close(this.#held.pop()!.fd);
    }
    // Bounded by the path's segments: each turn opens one.
    for (let top = this.#held[this.#held.length - 1]!; top.path !== path;) {
      const next = path.indexOf("/", top.path === "" ? 0 : top.path.length + 1);
      const child = next < 0 ? path : path.slice(0, next);
      const refused = this.#refused.get(child);
      if (refused !== undefined) return refused;
      const opened = this.#openDir(top.fd, child);
      if (typeof opened === "string") {
        this.#refused.set(child, opened);
        return opened;
      }
      this.#held.push(top = { path: child, fd: opened });
    }
    return this.#held[this.#held.length - 1]!.fd;
  }

  #openDir(parentFd: number, path: string): number | string {
    const name = pathToBytes(path.slice(path.lastIndexOf("/") + 1));
    let fd: number;
    try {
      fd = openAt(parentFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
    } catch (error) {
      const code = (error as Partial<NativeFsError>).code;
      if (code === "ENOTDIR" || code === "ELOOP") {
        return `its directory ${JSON.stringify(path)} changed type during the backup`;
      }
      return `its directory ${JSON.stringify(path)} cannot be opened: ${reasonOfOpenError(error)}`;
    }
    const seen = this.identity(path);
    const stat = statFd(fd);
    if (seen !== undefined && (stat.dev !== seen.dev || stat.ino !== seen.ino)) {
      close(fd);
      return `its directory ${JSON.stringify(path)} was replaced during the backup`;
    }
    return fd;
  }

  /** Closes every held directory, the root included. */
  close(): void {
    for (const dir of this.#held.splice(0)) close(dir.fd);
  }
}

function isAncestorOrSelf(dir: string, path: string): boolean {
  return dir === "" || dir === path || path.startsWith(`${dir}/`);
}

/** A file opened by path through `node:fs`. */
class PathSourceFile implements SourceFile {
  constructor(readonly handle: FileHandle, readonly stat: fs.Stats) {}

  get sizeBytes(): number {
    return this.stat.size;
  }

  read(into: Uint8Array, position: number): Promise<number> {
    const read = this.handle.read(into, 0, into.length, position).then((r) => r.bytesRead);
    read.catch(() => {}); // a read left pending when packing fails must not become unhandled
    return read;
  }

  dataMap(): null {
    return null; // no SEEK_DATA without FFI: stored whole
  }

  xattrs(): undefined {
    return undefined; // no xattr API without FFI
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}

/**
 * Whether `path` is a symlink now. Under granular permissions (anything but `--allow-all`) Deno
 * resolves symlinks itself to check the path and then opens the resolved path, so `O_NOFOLLOW`
 * cannot refuse a link there: the inode comparison is what keeps the link's target out, and
 * this says why the inode differs.
 */
async function isSymlinkNow(path: string): Promise<boolean> {
  return await Deno.lstat(path).then((info) => info.isSymlink, () => false);
}

/**
 * Opens `fullPath` by path for reading if it is the regular file the walk saw (the layer
 * without FFI).
 *
 * @param fullPath the file's path (root joined with the entry path)
 * @param seen the entry path and the device and inode the walk saw
 * @returns the open file, or the reason the file is skipped
 *
 * @example A symlink is never followed
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSourceFile } from "./_source_open.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/secret`, "s");
 * await Deno.symlink(`${dir}/secret`, `${dir}/link`);
 * const opened = await openSourceFile(`${dir}/link`, { path: "link" });
 * assert.deepEqual(opened, { ok: false, reason: "changed type during the backup (now a symlink)" });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openSourceFile(fullPath: string, seen: SeenFile): Promise<SourceOpen> {
  let handle: FileHandle;
  try {
    handle = await fs.promises.open(fullPath, SOURCE_OPEN_FLAGS);
  } catch (error) {
    return { ok: false, reason: reasonOfOpenError(error) };
  }
  let reason: string | undefined;
  let stat: fs.Stats | undefined;
  try {
    stat = await handle.stat();
    if (!stat.isFile()) reason = `changed type during the backup (now a ${typeOf(stat)})`;
    else if (seen.ino !== undefined && (stat.ino !== seen.ino || stat.dev !== seen.dev)) {
      reason = REPLACED;
    }
  } catch (error) {
    reason = reasonOfOpenError(error);
  }
  if (reason !== undefined && (await isSymlinkNow(fullPath))) reason = SYMLINK_NOW;
  if (reason === undefined && seen.ino === undefined && (await isSymlinkNow(fullPath))) {
    reason = SYMLINK_NOW;
  }
  if (reason !== undefined || stat === undefined) {
    await handle.close().catch(() => {});
    return { ok: false, reason: reason ?? "cannot be read" };
  }
  return { ok: true, file: new PathSourceFile(handle, stat) };
}
