/**
 * Files of region files' directories through libc rather than `Deno.*`: Deno 2.9 refuses its
 * own file APIs under `/dev` (the default `/dev/shm/lanfree/` included) without `--allow-all`
 * ("Requires all access"), while a process that maps a region already runs with `--allow-ffi`.
 * Every failure is a {@link LibcFileError} with the path, the call and the errno name.
 *
 * @module
 */

import { cPath, lastErrno, type Libc, libc, O } from "./_libc.ts";

/** A failed file call, with the path, the call and the errno name (`ENOENT`, `EEXIST`, ...). */
export class LibcFileError extends Error {
  /**
   * @param path the file
   * @param call the libc call that failed
   * @param errno its errno name
   */
  constructor(readonly path: string, readonly call: string, readonly errno: string) {
    super(`${call} ${path}: ${errno}`);
    this.name = "LibcFileError";
  }
}

function symbols(path: string): Libc {
  const loaded = libc();
  if (typeof loaded === "string") throw new LibcFileError(path, "dlopen", loaded);
  return loaded;
}

function check(result: number | bigint, symbols: Libc, path: string, call: string): number {
  if (Number(result) < 0) throw new LibcFileError(path, call, lastErrno(symbols));
  return Number(result);
}

const SEEK_END = 2;
/** Largest number of read or write calls one helper makes. */
const CALLS_MAX = 1 << 20;

/**
 * Reads at most `maxBytes` from the start of a file, read-only, and the file's size.
 *
 * @param path the file
 * @param maxBytes how many bytes to read at most
 * @returns the bytes read and the file's size
 */
export function readPrefix(path: string, maxBytes: number): { bytes: Uint8Array; size: number } {
  const lib = symbols(path);
  const fd = check(lib.open(cPath(path), O.RDONLY | O.CLOEXEC, 0), lib, path, "open");
  try {
    const size = check(lib.lseek(fd, 0n, SEEK_END), lib, path, "lseek");
    check(lib.lseek(fd, 0n, 0), lib, path, "lseek");
    const bytes = new Uint8Array(Math.min(size, maxBytes));
    let got = 0;
    for (let calls = 0; got < bytes.length && calls < CALLS_MAX; calls++) {
      const n = check(
        lib.read(fd, bytes.subarray(got), BigInt(bytes.length - got)),
        lib,
        path,
        "read",
      );
      if (n === 0) break;
      got += n;
    }
    return { bytes: bytes.subarray(0, got), size };
  } finally {
    lib.close(fd);
  }
}

/**
 * Writes a new file (refusing to replace one).
 *
 * @param path the file
 * @param bytes its contents
 */
export function writeNewFile(path: string, bytes: Uint8Array): void {
  const lib = symbols(path);
  const flags = O.RDWR | O.CREAT | O.EXCL | O.CLOEXEC;
  const fd = check(lib.open(cPath(path), flags, 0o600), lib, path, "open");
  try {
    let put = 0;
    for (let calls = 0; put < bytes.length && calls < CALLS_MAX; calls++) {
      const chunk = bytes.slice(put); // a copy: FFI buffers must not be views of shared memory
      put += check(lib.write(fd, chunk, BigInt(chunk.length)), lib, path, "write");
    }
  } finally {
    lib.close(fd);
  }
}

/** Reads a whole file. */
export function readWholeFile(path: string): Uint8Array {
  return readPrefix(path, Number.MAX_SAFE_INTEGER).bytes;
}

/** Links `existing` to the new name `path` (EEXIST when `path` exists). */
export function linkFile(existing: string, path: string): void {
  const lib = symbols(path);
  check(lib.link(cPath(existing), cPath(path)), lib, path, "link");
}

/** Removes a file. */
export function unlinkFile(path: string): void {
  const lib = symbols(path);
  check(lib.unlink(cPath(path)), lib, path, "unlink");
}

/** Makes a directory (mode 0700); an existing one is fine. */
export function makeDirectory(path: string): void {
  const lib = symbols(path);
  if (lib.mkdir(cPath(path), 0o700) !== 0) {
    const errno = lastErrno(lib);
    if (errno !== "EEXIST") throw new LibcFileError(path, "mkdir", errno);
  }
}

/** Removes an empty directory (ENOTEMPTY otherwise). */
export function removeDirectory(path: string): void {
  const lib = symbols(path);
  check(lib.rmdir(cPath(path)), lib, path, "rmdir");
}

/**
 * Makes a fresh directory `prefix` + six random characters (mode 0700).
 *
 * @param prefix e.g. `/dev/shm/lanfree-test-`
 * @returns its path
 */
export function makeTempDirectory(prefix: string): string {
  const lib = symbols(prefix);
  const template = cPath(`${prefix}XXXXXX`);
  if (lib.mkdtemp(template) === null) throw new LibcFileError(prefix, "mkdtemp", lastErrno(lib));
  return new TextDecoder().decode(template.subarray(0, template.length - 1));
}
