/**
 * The libc calls lanfree makes through Deno FFI (`--allow-ffi`): for the file region `open`,
 * `ftruncate`, `mmap`, `munmap`, `close`, `syscall` (for `futex`), `__errno_location` and the
 * file calls of `_libc_files.ts`; for backup and restore the `*at` calls relative to held
 * directory descriptors, `statx` and `getdents64` (through `syscall`, so no libc version
 * matters), positional reads and writes, `lseek` with `SEEK_DATA`/`SEEK_HOLE`, extended
 * attributes and the metadata calls of `fs_native.ts`. Loaded once, on first use. Nothing here
 * decides anything: callers check every result.
 *
 * Calls whose result is a byte count bounded by the buffer handed in (`read`, `pread`,
 * `readlinkat`, `flistxattr`, ...) declare an `i32` result: the low half of the returned
 * `ssize_t`, exact for every count below 2 GiB and for -1, and a plain number instead of a
 * BigInt on every call. Callers never pass buffers of 1 GiB or more to them.
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  link: { parameters: ["buffer", "buffer"], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  mkdir: { parameters: ["buffer", "u32"], result: "i32" },
  rmdir: { parameters: ["buffer"], result: "i32" },
  mkdtemp: { parameters: ["buffer"], result: "pointer" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  /** `syscall(SYS_statx, dirfd, path, flags, mask, buffer)`: no libc wrapper needed. */
  statx: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "i32", "u32", "buffer"],
    result: "i32",
  },
  /** `syscall(SYS_getdents64, fd, buffer, bytes)`. */
  getdents64: { name: "syscall", parameters: ["i64", "i32", "buffer", "usize"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "i32" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "i32" },
  readInto: { name: "read", parameters: ["i32", "buffer", "usize"], result: "i32" },
  flistxattr: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  fgetxattr: { parameters: ["i32", "buffer", "buffer", "usize"], result: "i32" },
  fsetxattr: { parameters: ["i32", "buffer", "buffer", "usize", "i32"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  fchownat: { parameters: ["i32", "buffer", "u32", "u32", "i32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  futimens: { parameters: ["i32", "buffer"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  /** `syscall(SYS_futex, addr, FUTEX_WAIT, value, timespec, NULL, 0)`, off the JS thread. */
  futexWait: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "i32", "buffer", "pointer", "i32"],
    result: "i64",
    nonblocking: true,
  },
  /** `syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0)`, synchronous. */
  futexWake: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "i32", "pointer", "pointer", "i32"],
    result: "i64",
  },
} as const;

/** The loaded symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** Linux open(2) flags (the same values on x86_64 and aarch64). */
export const O = { RDONLY: 0, RDWR: 2, CREAT: 0o100, EXCL: 0o200, CLOEXEC: 0o2000000 } as const;
/** mmap(2) protections and flags. */
export const PROT_READ_WRITE = 3;
/** A mapping every process of the file shares (`MAP_SHARED`). */
export const MAP_SHARED = 1;

/** Names of the errno values file calls meet, for messages (the same on x86_64 and aarch64). */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  31: "EMLINK",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  39: "ENOTEMPTY",
  40: "ELOOP",
  61: "ENODATA",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  122: "EDQUOT",
};

let loaded: Libc | undefined;
let loadError: string | undefined;

/** The libc library names tried in order (glibc, then musl). */
const LIBRARIES = ["libc.so.6", "libc.so", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"];

/**
 * The libc symbols, loaded on first use.
 *
 * @returns the symbols, or a sentence saying why they cannot be loaded (no FFI permission, not
 *   Linux, no libc found)
 */
export function libc(): Libc | string {
  if (loaded !== undefined) return loaded;
  if (loadError !== undefined) return loadError;
  if (Deno.build.os !== "linux") {
    return (loadError = `file regions need Linux, not ${Deno.build.os}`);
  }
  const failures: string[] = [];
  for (const name of LIBRARIES) {
    try {
      loaded = Deno.dlopen(name, SYMBOLS).symbols;
      return loaded;
    } catch (error) {
      failures.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        break;
      }
    }
  }
  loadError = `libc could not be loaded through FFI (run with --allow-ffi): ${failures.join("; ")}`;
  return loadError;
}

/** The calling thread's errno, as a name when known (read right after a failed call). */
export function lastErrno(symbols: Libc): string {
  return errnoName(errnoValue(symbols));
}

/** The calling thread's errno as a number (read right after a failed call; -1 if unknown). */
export function errnoValue(symbols: Libc): number {
  const location = symbols.__errno_location();
  if (location === null) return -1;
  return new Deno.UnsafePointerView(location).getInt32();
}

/** The name of an errno value (`ENOENT`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** A NUL-terminated path for open(2). */
export function cPath(path: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${path}\0`);
}

/** Whether mmap(2) returned MAP_FAILED (or nothing). */
export function mapFailed(pointer: Deno.PointerValue): boolean {
  return pointer === null || BigInt(Deno.UnsafePointer.value(pointer)) === 0xffff_ffff_ffff_ffffn;
}
