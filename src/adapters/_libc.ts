/**
 * The few libc calls the file region needs, through Deno FFI (`--allow-ffi`): `open`,
 * `ftruncate`, `mmap`, `munmap`, `close`, `syscall` (for `futex`), `__errno_location`, and the
 * file calls of `_libc_files.ts`. Loaded once, on first use. Nothing here decides anything:
 * callers check every result.
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

/** Names of the errno values a region file can meet, for messages. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  5: "EIO",
  12: "ENOMEM",
  13: "EACCES",
  17: "EEXIST",
  39: "ENOTEMPTY",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
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
  const location = symbols.__errno_location();
  if (location === null) return "errno unknown";
  const errno = new Deno.UnsafePointerView(location).getInt32();
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
