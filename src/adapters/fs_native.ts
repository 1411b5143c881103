/**
 * File-system calls straight to the kernel through libc (Deno FFI, `--allow-ffi`), for what
 * Deno's own APIs cannot do: open relative to a held directory descriptor with real
 * `O_NOFOLLOW` (Deno resolves symlinks itself under granular permissions), read directory names
 * as raw bytes (`getdents64`; Deno decodes them lossily), find holes (`SEEK_DATA`/`SEEK_HOLE`),
 * and read and write extended attributes. Every call is synchronous and direct: no thread-pool
 * hop, a few microseconds each.
 *
 * A thin adapter: each function is one system call (or a bounded loop of one), names are bytes
 * or strings, and every failure is a {@link NativeFsError} with the call, the name and the
 * errno. Decisions (what to follow, what to check) belong to the callers. Constants are Linux's,
 * by `Deno.build.arch` (x86_64 and aarch64).
 *
 * @module
 */

import { errnoName, errnoValue, type Libc, libc } from "./_libc.ts";

/** open(2) flags for this architecture. */
export interface OpenFlags {
  readonly RDONLY: number;
  readonly WRONLY: number;
  readonly RDWR: number;
  readonly CREAT: number;
  readonly EXCL: number;
  readonly NONBLOCK: number;
  readonly DIRECTORY: number;
  readonly NOFOLLOW: number;
  readonly CLOEXEC: number;
  /** An unnamed file in the directory opened (`O_TMPFILE`, which includes `O_DIRECTORY`). */
  readonly TMPFILE: number;
}

const COMMON = { RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, NONBLOCK: 0o4000 };
/** Flags and syscall numbers by architecture (x86 values vs asm-generic ones). */
const ARCH: Record<string, { flags: OpenFlags; statx: bigint; getdents64: bigint }> = {
  x86_64: {
    flags: {
      ...COMMON,
      DIRECTORY: 0o200000,
      NOFOLLOW: 0o400000,
      CLOEXEC: 0o2000000,
      TMPFILE: 0o20000000 | 0o200000,
    },
    statx: 332n,
    getdents64: 217n,
  },
  aarch64: {
    flags: {
      ...COMMON,
      DIRECTORY: 0o40000,
      NOFOLLOW: 0o100000,
      CLOEXEC: 0o2000000,
      TMPFILE: 0o20000000 | 0o40000,
    },
    statx: 291n,
    getdents64: 61n,
  },
};

const arch = ARCH[Deno.build.arch] ?? ARCH.x86_64!;
/** open(2) flags of this machine. */
export const O: OpenFlags = arch.flags;

/** The current directory, for calls given an absolute path. */
export const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
const AT_SYMLINK_FOLLOW = 0x400;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENOENT = 2;
const ENXIO = 6;
const ERANGE = 34;
/** Largest list of xattr names and largest xattr value Linux has (XATTR_LIST_MAX, _SIZE_MAX). */
export const XATTR_BYTES_MAX = 65536;
/** Bytes read from a directory per getdents64 call. */
const DIRENT_BUFFER_BYTES = 64 * 1024;
/** Most getdents64 calls for one directory (2^20 calls of 64 KiB: far more than any). */
const DIRENT_CALLS_MAX = 1 << 20;
const DIRENT_BYTES = BigInt(DIRENT_BUFFER_BYTES);
/** Longest path or name handed to a call (PATH_MAX). */
const NAME_BYTES_MAX = 4096;

/** A failed call, with the call, the name concerned and the errno. */
export class NativeFsError extends Error {
  /**
   * @param call the system call
   * @param what the path or name it was given (decoded for the message)
   * @param errno the errno value
   */
  constructor(readonly call: string, readonly what: string, readonly errno: number) {
    super(`${call} ${JSON.stringify(what)}: ${errnoName(errno)}`);
    this.name = "NativeFsError";
  }

  /** The errno's name (`ENOENT`, `ELOOP`, ...), as `node:fs` errors carry it in `code`. */
  get code(): string {
    return errnoName(this.errno);
  }
}

/** File types as statx reports them. */
export type NativeType = "file" | "dir" | "symlink" | "fifo" | "socket" | "device" | "unknown";

/** What statx says of one file. */
export interface NativeStat {
  readonly type: NativeType;
  /** Permission bits with setuid, setgid and sticky (0..0o7777). */
  readonly mode: number;
  readonly dev: number;
  readonly ino: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** Bytes allocated on disk (512-byte blocks times 512). */
  readonly allocatedBytes: number;
  /** Modification time in whole milliseconds (as `Deno.FileInfo.mtime`). */
  readonly mtimeMs: number;
  /** Status change time in whole milliseconds. */
  readonly ctimeMs: number;
}

let loaded: Libc | undefined;

function lib(): Libc {
  if (loaded !== undefined) return loaded;
  const symbols = libc();
  if (typeof symbols === "string") {
    throw new Error(`the native file layer is unavailable: ${symbols}`);
  }
  return (loaded = symbols);
}

/**
 * Whether the native layer can be used here: Linux on x86_64 or aarch64 with FFI permission.
 *
 * @returns true, or a sentence saying why not
 */
export function nativeFsAvailable(): true | string {
  if (Deno.build.os !== "linux") return `the native file layer needs Linux, not ${Deno.build.os}`;
  if (ARCH[Deno.build.arch] === undefined) {
    return `the native file layer knows x86_64 and aarch64, not ${Deno.build.arch}`;
  }
  const symbols = libc();
  return typeof symbols === "string" ? symbols : true;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Two scratch buffers for NUL-terminated names (calls are synchronous: never shared). */
const scratch = [new Uint8Array(NAME_BYTES_MAX + 1), new Uint8Array(NAME_BYTES_MAX + 1)];

/** A NUL-terminated copy of `name` in scratch buffer `slot`. */
function cName(name: Uint8Array | string, slot: 0 | 1): Uint8Array {
  const into = scratch[slot]!;
  let length: number;
  if (typeof name === "string") {
    const result = encoder.encodeInto(name, into.subarray(0, NAME_BYTES_MAX));
    if (result.read! < name.length) throw new NativeFsError("name", name, 36);
    length = result.written!;
  } else {
    if (name.length > NAME_BYTES_MAX) throw new NativeFsError("name", decoder.decode(name), 36);
    into.set(name);
    length = name.length;
  }
  into[length] = 0;
  return into.subarray(0, length + 1);
}

function label(name: Uint8Array | string): string {
  return typeof name === "string" ? name : decoder.decode(name);
}

function check(result: number, call: string, name: Uint8Array | string): number {
  if (result < 0) throw new NativeFsError(call, label(name), errnoValue(lib()));
  return result;
}

/**
 * Opens `name` relative to the directory `dirFd` (or an absolute path with {@link AT_FDCWD}).
 *
 * @param dirFd a directory descriptor
 * @param name a name in it (bytes or a string), or a relative path
 * @param flags open(2) flags from {@link O}
 * @param mode permission bits of a created file
 * @returns the new descriptor
 */
export function openAt(dirFd: number, name: Uint8Array | string, flags: number, mode = 0): number {
  return check(lib().openat(dirFd, cName(name, 0), flags | O.CLOEXEC, mode), "openat", name);
}

/** Closes a descriptor (errors ignored: nothing is left to do with it). */
export function close(fd: number): void {
  lib().close(fd);
}

const statBuffer = new Uint8Array(256);
const statView = new DataView(statBuffer.buffer);

function typeOfMode(mode: number): NativeType {
  switch (mode & 0o170000) {
    case 0o100000:
      return "file";
    case 0o040000:
      return "dir";
    case 0o120000:
      return "symlink";
    case 0o010000:
      return "fifo";
    case 0o140000:
      return "socket";
    case 0o020000:
    case 0o060000:
      return "device";
    default:
      return "unknown";
  }
}

function u64(offset: number): number {
  return statView.getUint32(offset, true) + statView.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** glibc's makedev, so numbers match `Deno.FileInfo.dev`. */
function makedev(major: number, minor: number): number {
  const high = (major & 0xfffff000) * 0x1_0000_0000 + (minor & 0xffffff00) * 4096;
  return high + (major & 0xfff) * 256 + (minor & 0xff);
}

/** A signed 64-bit field as a number (exact below 2^53), without a BigInt. */
function i64(offset: number): number {
  return statView.getInt32(offset + 4, true) * 0x1_0000_0000 + statView.getUint32(offset, true);
}

function parseStat(): NativeStat {
  const mode = statView.getUint16(28, true);
  const seconds = i64(112);
  const nanos = statView.getUint32(120, true);
  return {
    type: typeOfMode(mode),
    mode: mode & 0o7777,
    nlink: statView.getUint32(16, true),
    uid: statView.getUint32(20, true),
    gid: statView.getUint32(24, true),
    ino: u64(32),
    size: u64(40),
    allocatedBytes: u64(48) * 512,
    mtimeMs: seconds * 1000 + Math.floor(nanos / 1_000_000),
    ctimeMs: i64(96) * 1000 +
      Math.floor(statView.getUint32(104, true) / 1_000_000),
    dev: makedev(statView.getUint32(136, true), statView.getUint32(140, true)),
  };
}

/**
 * statx of `name` in `dirFd`, never following a final symlink.
 *
 * @param dirFd a directory descriptor (or {@link AT_FDCWD})
 * @param name the name
 * @returns what statx reports
 */
export function statAt(dirFd: number, name: Uint8Array | string): NativeStat {
  const result = lib().statx(
    arch.statx,
    dirFd,
    cName(name, 0),
    AT_SYMLINK_NOFOLLOW,
    STATX_BASIC_STATS,
    statBuffer,
  );
  check(result, "statx", name);
  return parseStat();
}

/**
 * statx of an open descriptor.
 *
 * @param fd the descriptor
 * @returns what statx reports
 */
export function statFd(fd: number): NativeStat {
  const result = lib().statx(
    arch.statx,
    fd,
    cName("", 0),
    AT_EMPTY_PATH,
    STATX_BASIC_STATS,
    statBuffer,
  );
  check(result, "fstat", `fd ${fd}`);
  return parseStat();
}

const direntBuffer = new Uint8Array(DIRENT_BUFFER_BYTES);
const direntView = new DataView(direntBuffer.buffer);

/**
 * The names in an open directory, as raw bytes, without `.` and `..`, in the order the kernel
 * returns them.
 *
 * @param dirFd a directory opened for reading
 * @param what the directory, for error messages
 * @returns the names
 */
export function readDirNames(dirFd: number, what = `fd ${dirFd}`): Uint8Array[] {
  const names: Uint8Array[] = [];
  const symbols = lib();
  for (let calls = 0; calls < DIRENT_CALLS_MAX; calls++) {
    const got = symbols.getdents64(arch.getdents64, dirFd, direntBuffer, DIRENT_BYTES);
    if (got === 0) return names;
    check(got, "getdents64", what);
    // Bounded by `got`: each record is at least 20 bytes (d_reclen).
    for (let at = 0; at < got;) {
      const recordBytes = direntView.getUint16(at + 16, true);
      const start = at + 19;
      const end = direntBuffer.indexOf(0, start);
      const isDot = end - start <= 2 && direntBuffer[start] === 0x2e &&
        (end - start === 1 || direntBuffer[start + 1] === 0x2e);
      if (!isDot) names.push(direntBuffer.slice(start, end));
      at += recordBytes;
    }
  }
  throw new NativeFsError("getdents64", `${what}: more than ${DIRENT_CALLS_MAX} reads`, 75);
}

const linkBuffer = new Uint8Array(NAME_BYTES_MAX + 1);

/**
 * The target of the symlink `name` in `dirFd`, as raw bytes.
 *
 * @param dirFd a directory descriptor
 * @param name the symlink's name
 * @returns the target's bytes
 */
export function readLinkAt(dirFd: number, name: Uint8Array | string): Uint8Array {
  const got = lib().readlinkat(dirFd, cName(name, 0), linkBuffer, BigInt(linkBuffer.length));
  check(got, "readlinkat", name);
  if (got > NAME_BYTES_MAX) throw new NativeFsError("readlinkat", label(name), 36);
  return linkBuffer.slice(0, got);
}

/**
 * Reads up to `into.length` bytes at `position` (fewer at the end of the file).
 *
 * @param fd the file
 * @param into where the bytes go (a view of a SharedArrayBuffer is fine)
 * @param position the file offset
 * @returns bytes read, 0 at the end
 */
export function pread(fd: number, into: Uint8Array, position: number): number {
  return check(lib().pread(fd, into, BigInt(into.length), BigInt(position)), "pread", `fd ${fd}`);
}

/**
 * Reads up to `into.length` bytes at the current position (for files that cannot seek).
 *
 * @param fd the file
 * @param into where the bytes go
 * @returns bytes read, 0 at the end
 */
export function read(fd: number, into: Uint8Array): number {
  return check(lib().readInto(fd, into, BigInt(into.length)), "read", `fd ${fd}`);
}

/**
 * Writes all of `bytes` at `position` (retrying short writes, a bounded number of times).
 *
 * @param fd the file
 * @param bytes what to write
 * @param position the file offset
 */
export function pwriteAll(fd: number, bytes: Uint8Array, position: number): void {
  const symbols = lib();
  // Bounded: each turn writes at least one byte or throws (a zero write counts as a failure).
  for (let at = 0, turns = 0; at < bytes.length; turns++) {
    const rest = bytes.subarray(at);
    const n = symbols.pwrite(fd, rest, BigInt(rest.length), BigInt(position + at));
    if (n <= 0 || turns > bytes.length) {
      throw new NativeFsError("pwrite", `fd ${fd}`, n === 0 ? 28 : errnoValue(symbols));
    }
    at += n;
  }
}

/**
 * The next data at or after `offset` (`SEEK_DATA`), or null when only a hole follows.
 *
 * @param fd the file
 * @param offset where to look from
 * @returns the offset of the data, or null
 */
export function seekData(fd: number, offset: number): number | null {
  const result = Number(lib().lseek(fd, BigInt(offset), SEEK_DATA));
  if (result >= 0) return result;
  const errno = errnoValue(lib());
  if (errno === ENXIO) return null;
  throw new NativeFsError("lseek SEEK_DATA", `fd ${fd}`, errno);
}

/**
 * The next hole at or after `offset` (`SEEK_HOLE`; the end of the file counts as one).
 *
 * @param fd the file
 * @param offset where to look from
 * @returns the offset of the hole
 */
export function seekHole(fd: number, offset: number): number {
  const result = Number(lib().lseek(fd, BigInt(offset), SEEK_HOLE));
  if (result < 0) throw new NativeFsError("lseek SEEK_HOLE", `fd ${fd}`, errnoValue(lib()));
  return result;
}

const xattrBuffer = new Uint8Array(XATTR_BYTES_MAX);

/**
 * The names of an open file's extended attributes (raw bytes of each name).
 *
 * @param fd the file or directory
 * @returns the names, in the kernel's order
 */
export function listXattrs(fd: number): Uint8Array[] {
  const symbols = lib();
  const got = symbols.flistxattr(fd, xattrBuffer, BigInt(xattrBuffer.length));
  if (got < 0) {
    const errno = errnoValue(symbols);
    if (errno === 95) return []; // EOPNOTSUPP: this file system keeps none
    throw new NativeFsError("flistxattr", `fd ${fd}`, errno);
  }
  const names: Uint8Array[] = [];
  // Bounded by `got`: each turn consumes one NUL-terminated name.
  for (let at = 0; at < got;) {
    const end = xattrBuffer.indexOf(0, at);
    const stop = end < 0 || end > got ? got : end;
    if (stop > at) names.push(xattrBuffer.slice(at, stop));
    at = stop + 1;
  }
  return names;
}

/**
 * The value of one extended attribute of an open file.
 *
 * @param fd the file or directory
 * @param name the attribute's name
 * @returns its value, or null when it went away meanwhile
 */
export function getXattr(fd: number, name: Uint8Array | string): Uint8Array | null {
  const symbols = lib();
  const got = symbols.fgetxattr(fd, cName(name, 0), xattrBuffer, BigInt(xattrBuffer.length));
  if (got >= 0) return xattrBuffer.slice(0, got);
  const errno = errnoValue(symbols);
  if (errno === 61) return null; // ENODATA: removed between the list and the get
  if (errno === ERANGE) throw new NativeFsError("fgetxattr", label(name), ERANGE);
  throw new NativeFsError("fgetxattr", label(name), errno);
}

/**
 * Sets one extended attribute of an open file.
 *
 * @param fd the file or directory
 * @param name the attribute's name
 * @param value its value
 */
export function setXattr(fd: number, name: Uint8Array | string, value: Uint8Array): void {
  const copy = value.length === 0 ? new Uint8Array(1) : value;
  check(lib().fsetxattr(fd, cName(name, 0), copy, BigInt(value.length), 0), "fsetxattr", name);
}

/**
 * Renames `from` in `fromDir` to `to` in `toDir` (replacing a file there).
 *
 * @param fromDir directory of the old name
 * @param from the old name
 * @param toDir directory of the new name
 * @param to the new name
 */
export function renameAt(
  fromDir: number,
  from: Uint8Array | string,
  toDir: number,
  to: Uint8Array | string,
): void {
  check(lib().renameat(fromDir, cName(from, 0), toDir, cName(to, 1)), "renameat", to);
}

/**
 * Makes the directory `name` in `dirFd`.
 *
 * @param dirFd the parent
 * @param name the new directory's name
 * @param mode its permission bits (before the umask)
 */
export function mkdirAt(dirFd: number, name: Uint8Array | string, mode: number): void {
  check(lib().mkdirat(dirFd, cName(name, 0), mode), "mkdirat", name);
}

/**
 * Makes the symlink `name` in `dirFd`, pointing at `target` (stored as given, never resolved).
 *
 * @param target the link's contents
 * @param dirFd the directory
 * @param name the link's name
 */
export function symlinkAt(
  target: Uint8Array | string,
  dirFd: number,
  name: Uint8Array | string,
): void {
  check(lib().symlinkat(cName(target, 1), dirFd, cName(name, 0)), "symlinkat", name);
}

/**
 * Makes `to` in `toDir` a hard link to `from` in `fromDir` (a symlink `from` is linked itself).
 *
 * @param fromDir directory of the existing name
 * @param from the existing name
 * @param toDir directory of the new name
 * @param to the new name
 */
export function linkAt(
  fromDir: number,
  from: Uint8Array | string,
  toDir: number,
  to: Uint8Array | string,
): void {
  check(lib().linkat(fromDir, cName(from, 0), toDir, cName(to, 1), 0), "linkat", to);
}

/** Whether `linkat(AT_EMPTY_PATH)` was refused (it needs CAP_DAC_READ_SEARCH) and `/proc` served. */
let emptyPathRefused = false;

/**
 * Gives the open file `fd` the name `to` in `toDir` (a hard link to the descriptor's inode: an
 * unnamed `O_TMPFILE` file gets its first name). No path names the file, so nothing is resolved
 * but `to`, and an existing `to` is never replaced (EEXIST). `linkat(fd, "", AT_EMPTY_PATH)`
 * needs CAP_DAC_READ_SEARCH; without it the `/proc/self/fd/N` form is used, as open(2)
 * describes for `O_TMPFILE`.
 *
 * @param fd the open file
 * @param toDir directory of the new name
 * @param to the new name
 */
export function linkFd(fd: number, toDir: number, to: Uint8Array | string): void {
  const symbols = lib();
  if (!emptyPathRefused) {
    if (symbols.linkat(fd, cName("", 0), toDir, cName(to, 1), AT_EMPTY_PATH) === 0) return;
    const errno = errnoValue(symbols);
    if (errno !== ENOENT) throw new NativeFsError("linkat", label(to), errno);
  }
  const proc = cName(`/proc/self/fd/${fd}`, 0);
  check(symbols.linkat(AT_FDCWD, proc, toDir, cName(to, 1), AT_SYMLINK_FOLLOW), "linkat", to);
  emptyPathRefused = true; // the /proc form served where the other did not
}

/**
 * Removes `name` from `dirFd` (an empty directory with `directory`).
 *
 * @param dirFd the directory
 * @param name the name to remove
 * @param directory remove an empty directory instead of a file or link
 */
export function unlinkAt(dirFd: number, name: Uint8Array | string, directory = false): void {
  check(lib().unlinkat(dirFd, cName(name, 0), directory ? AT_REMOVEDIR : 0), "unlinkat", name);
}

/**
 * Sets the owner of `name` in `dirFd` without following a symlink (the link itself changes).
 *
 * @param dirFd the directory
 * @param name the entry
 * @param uid the user id
 * @param gid the group id
 */
export function chownAt(
  dirFd: number,
  name: Uint8Array | string,
  uid: number,
  gid: number,
): void {
  check(lib().fchownat(dirFd, cName(name, 0), uid, gid, AT_SYMLINK_NOFOLLOW), "fchownat", name);
}

/**
 * Sets the owner of an open file.
 *
 * @param fd the file
 * @param uid the user id
 * @param gid the group id
 */
export function fchown(fd: number, uid: number, gid: number): void {
  check(lib().fchownat(fd, cName("", 0), uid, gid, AT_EMPTY_PATH), "fchown", `fd ${fd}`);
}

/**
 * Sets the permission bits of an open file.
 *
 * @param fd the file
 * @param mode the bits (0..0o7777)
 */
export function fchmod(fd: number, mode: number): void {
  check(lib().fchmod(fd, mode), "fchmod", `fd ${fd}`);
}

const timesBuffer = new BigInt64Array(4);

/**
 * Sets an open file's access and modification times to `mtimeMs`.
 *
 * @param fd the file
 * @param mtimeMs the time, ms since the epoch (fractions of a ms kept to the nanosecond)
 */
export function futimens(fd: number, mtimeMs: number): void {
  const seconds = Math.floor(mtimeMs / 1000);
  const nanos = Math.min(999_999_999, Math.round((mtimeMs - seconds * 1000) * 1_000_000));
  timesBuffer[0] = timesBuffer[2] = BigInt(seconds);
  timesBuffer[1] = timesBuffer[3] = BigInt(nanos);
  const bytes = new Uint8Array(timesBuffer.buffer);
  check(lib().futimens(fd, bytes), "futimens", `fd ${fd}`);
}

/**
 * Sets an open file's size (cutting it or adding a hole).
 *
 * @param fd the file
 * @param sizeBytes the new size
 */
export function ftruncate(fd: number, sizeBytes: number): void {
  check(Number(lib().ftruncate(fd, BigInt(sizeBytes))), "ftruncate", `fd ${fd}`);
}

/**
 * Flushes an open file's data and metadata to disk.
 *
 * @param fd the file
 */
export function fsync(fd: number): void {
  check(lib().fsync(fd), "fsync", `fd ${fd}`);
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/**
 * Takes an exclusive `flock` on an open file, without waiting: the kernel drops it when the
 * holder dies, however it dies.
 *
 * @param fd the file
 * @returns true when taken, false when another open file description holds it
 */
export function tryLock(fd: number): boolean {
  const symbols = lib();
  if (symbols.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const errno = errnoValue(symbols);
  if (errno === EWOULDBLOCK) return false;
  throw new NativeFsError("flock", `fd ${fd}`, errno);
}
