/**
 * A storage region that is a file any process can map: the second implementation of the core's
 * `Region` (the SharedArrayBuffer one stays the default and the one in the bundle). The file is
 * the region byte for byte (header with magic `LNFR` and layout version first); it is mapped
 * `MAP_SHARED` through libc (Deno FFI, so a process that maps one runs with `--allow-ffi`),
 * every word access is an Atomics operation on the mapping, and waits use `futex` on the mapped
 * words (`futex.ts`). The default place for region files is `/dev/shm/lanfree/` (memory-backed);
 * any path works.
 *
 * Opening a file validates it before anything is mapped or written: a missing file, a file of
 * another format or layout version, one too small for a header, or one shorter than its header
 * says gives a {@link RegionFileError} naming the file, and the file is opened read-only until
 * it has passed. Every file call goes through libc too (`_libc_files.ts`): Deno 2.9 opens
 * nothing under `/dev` with its own APIs unless the process runs with `--allow-all`. Truncating a file while processes have it mapped makes their next access to
 * the lost pages fail with SIGBUS, as for any memory-mapped database: do not.
 *
 * @module
 */

import { fail, ok } from "../core/dispatch/errors.ts";
import { type HostSlot, hostSlots } from "../core/stp/hosts.ts";
import {
  H,
  HEADER_WORDS,
  planRegion,
  REGION_MAGIC,
  REGION_VERSION,
  type RegionConfig,
  type RegionLayout,
} from "../core/stp/layout.ts";
import {
  checkRegionHeader,
  formatInto,
  HEADER_AND_STG_TABLE_BYTES,
  type Region,
  type RegionFactory,
  type WaitResult,
} from "../core/stp/region.ts";
import {
  cPath,
  lastErrno,
  type Libc,
  libc,
  MAP_SHARED,
  mapFailed,
  O,
  PROT_READ_WRITE,
} from "./_libc.ts";
import { LibcFileError, linkFile, readPrefix, unlinkFile, writeNewFile } from "./_libc_files.ts";
import { type WakeMethod, wordWaiter } from "./futex.ts";
import { atomicsMemory } from "./shm_memory.ts";

/** Where region files live unless told otherwise (a tmpfs: the region stays in memory). */
export const DEFAULT_REGION_DIRECTORY = "/dev/shm/lanfree";
/** Bytes of a region header: a file shorter than this is no region. */
export const HEADER_BYTES = HEADER_WORDS * 4;

/** What went wrong with a region file. */
export type RegionFileProblem =
  | "not-found"
  | "exists"
  | "not-a-region"
  | "version"
  | "too-small"
  | "truncated"
  | "invalid"
  | "in-use"
  | "ffi"
  | "io";

/** A region file that cannot be created or opened, with the file's path and the reason. */
export class RegionFileError extends Error {
  /** The file. */
  readonly path: string;
  /** What is wrong, as a value callers can switch on. */
  readonly problem: RegionFileProblem;

  /**
   * Builds the error; its message starts with `region file <path>:`.
   *
   * @param path the region file
   * @param problem what is wrong
   * @param message the facts, in words
   */
  constructor(path: string, problem: RegionFileProblem, message: string) {
    super(`region file ${path}: ${message}`);
    this.name = "RegionFileError";
    this.path = path;
    this.problem = problem;
  }
}

/** A mapped region file. */
export interface RegionFile extends Region {
  /** The file. */
  readonly path: string;
  /** How hosts wait on it: `futex`, or `poll` where futex is not available. */
  readonly wakeMethod: WakeMethod;
  /** Waits on a word of the mapping (futex, or polling); see `Region.wait`. */
  wait(index: number, value: number, timeoutMs: number): Promise<WaitResult>;
  /** Unmaps the file and closes its descriptor once pending waits have ended (see `closed`). */
  close(): void;
  /** Resolves when the mapping and the descriptor are released after `close`. */
  readonly closed: Promise<void>;
}

/** Options of {@link openRegionFile} and {@link createRegionFile}. */
export interface RegionFileOptions {
  /** `futex` (default where available) or `poll`. */
  readonly wakeMethod?: WakeMethod;
  /** How long a wait spins at most before it sleeps, µs (default `SPIN_MICROS_DEFAULT`, 200). */
  readonly spinMicros?: number;
}

function symbolsFor(path: string): Libc {
  const symbols = libc();
  if (typeof symbols === "string") throw new RegionFileError(path, "ffi", symbols);
  return symbols;
}

/** Reads the first bytes of a file (read-only) and its size. */
function readHead(path: string): { prefix: Uint8Array; size: number } {
  try {
    const { bytes, size } = readPrefix(path, HEADER_AND_STG_TABLE_BYTES);
    return { prefix: bytes, size };
  } catch (error) {
    throw fileError(path, error);
  }
}

/** A libc file failure as a region file error. */
function fileError(path: string, error: unknown): unknown {
  if (!(error instanceof LibcFileError)) return error;
  if (error.errno === "ENOENT") return new RegionFileError(path, "not-found", error.message);
  if (error.errno === "EEXIST") {
    return new RegionFileError(path, "exists", "already exists; refusing to replace it");
  }
  return new RegionFileError(path, "io", error.message);
}

/**
 * Validates a region file from its first bytes and size, naming what is wrong.
 *
 * @param path the file (for messages)
 * @param prefix its first bytes
 * @param size its size in bytes
 * @returns the layout stored in it
 */
export function checkRegionFile(path: string, prefix: Uint8Array, size: number): RegionLayout {
  if (prefix.length < HEADER_BYTES || size < HEADER_BYTES) {
    throw new RegionFileError(
      path,
      "too-small",
      `${size} bytes, smaller than a region header (${HEADER_BYTES} bytes)`,
    );
  }
  const words = new Int32Array(prefix.buffer, prefix.byteOffset, prefix.length >>> 2);
  const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.length);
  const magic = view.getInt32(H.magic * 4, true);
  if (magic !== REGION_MAGIC) {
    const found = (magic >>> 0).toString(16).padStart(8, "0");
    throw new RegionFileError(path, "not-a-region", `not a lanfree region (magic 0x${found})`);
  }
  const version = view.getInt32(H.version * 4, true);
  if (version !== REGION_VERSION) {
    throw new RegionFileError(
      path,
      "version",
      `region layout version ${version}, this lanfree reads version ${REGION_VERSION}`,
    );
  }
  const layout = checkRegionHeader(words, Number.MAX_SAFE_INTEGER);
  if (!layout.ok) throw new RegionFileError(path, "invalid", layout.message);
  if (layout.value.regionBytes > size) {
    throw new RegionFileError(
      path,
      "truncated",
      `${size} bytes, but its header describes a region of ${layout.value.regionBytes} bytes`,
    );
  }
  return layout.value;
}

/**
 * Opens and maps an existing region file.
 *
 * @param path the region file
 * @param options how hosts wait on it
 * @returns the mapped region (close it when done)
 * @throws {RegionFileError} naming the file when it is missing, not a region, of another
 *   version, too small or truncated; nothing has been written to it then
 *
 * @example Creating, reopening and removing a region file
 * ```ts
 * import { createRegionFile, openRegionFile, removeRegionFile } from "./region_file.ts";
 * const path = `/dev/shm/lanfree-example-${crypto.randomUUID()}`;
 * createRegionFile(path, {
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 1000, leaseMs: 1000,
 *   backlogMax: 2,
 * }).close();
 * const region = openRegionFile(path);
 * console.assert(region.layout.stgs[0]?.id === 1);
 * region.close();
 * await region.closed;
 * removeRegionFile(path);
 * ```
 */
export function openRegionFile(path: string, options: RegionFileOptions = {}): RegionFile {
  const { prefix, size } = readHead(path);
  const layout = checkRegionFile(path, prefix, size);
  const symbols = symbolsFor(path);
  const fd = symbols.open(cPath(path), O.RDWR | O.CLOEXEC, 0);
  if (fd < 0) throw new RegionFileError(path, "io", `open failed: ${lastErrno(symbols)}`);
  const region = mapRegion(symbols, path, fd, layout.regionBytes, options);
  if (region.layout.regionId !== layout.regionId) {
    region.close();
    throw new RegionFileError(path, "invalid", "the file was replaced while it was being opened");
  }
  return region;
}

/**
 * Creates a region file: plans the layout, writes a formatted region to a temporary file in
 * the same directory, and links it to `path` only when complete, so no process ever maps a
 * half-written region. Refuses to replace an existing file.
 *
 * @param path where the region file goes (its directory must exist)
 * @param config the region's geometry
 * @param options how hosts wait on it, and its id (default a random UUID)
 * @returns the mapped region (close it when done)
 * @throws {RegionFileError} `exists` when `path` exists, `invalid` for a bad configuration,
 *   `io` when the file cannot be written
 */
export function createRegionFile(
  path: string,
  config: RegionConfig,
  options: RegionFileOptions & { readonly regionId?: string } = {},
): RegionFile {
  const layout = planRegion(config, options.regionId ?? crypto.randomUUID());
  if (!layout.ok) throw new RegionFileError(path, "invalid", layout.message);
  const symbols = symbolsFor(path);
  const staging = `${path}.staging-${crypto.randomUUID()}`;
  const fd = symbols.open(cPath(staging), O.RDWR | O.CREAT | O.EXCL | O.CLOEXEC, 0o600);
  if (fd < 0) throw new RegionFileError(path, "io", `create failed: ${lastErrno(symbols)}`);
  try {
    if (symbols.ftruncate(fd, BigInt(layout.value.regionBytes)) !== 0) {
      const reason = lastErrno(symbols);
      symbols.close(fd);
      throw new RegionFileError(path, "io", `ftruncate failed: ${reason}`);
    }
    const region = { ...mapRegion(symbols, path, fd, layout.value, options), path };
    try {
      linkNew(staging, path);
    } catch (error) {
      region.close();
      throw error;
    }
    return region;
  } finally {
    unlinkFile(staging);
  }
}

/**
 * Removes a region file, after checking it is one and that no host holds a live lease on it.
 *
 * @param path the region file
 * @param options `force`: remove it even while hosts hold live leases (they keep their mapping
 *   until they close it; nobody new can open the file)
 * @returns the slots that held a live lease (removed anyway with `force`)
 * @throws {RegionFileError} for a file that is not a region (never removed), `in-use` when a
 *   host holds a live lease and `force` is not set
 */
export function removeRegionFile(
  path: string,
  options: { readonly force?: boolean } = {},
): HostSlot[] {
  const region = openRegionFile(path);
  let live: HostSlot[];
  try {
    live = hostSlots(region.memory, region.layout, Date.now()).filter((h) => h.status === "live");
  } finally {
    region.close();
  }
  if (live.length > 0 && options.force !== true) {
    const who = live.map((h) => `slot ${h.hostId} (pid ${h.pid})`).join(", ");
    throw new RegionFileError(
      path,
      "in-use",
      `live leases held by ${who}; force removes it anyway`,
    );
  }
  try {
    unlinkFile(path);
  } catch (error) {
    throw fileError(path, error);
  }
  return live;
}

/** Links the staged file to its name; never replaces an existing file. */
function linkNew(staging: string, path: string): void {
  try {
    linkFile(staging, path);
  } catch (error) {
    throw fileError(path, error);
  }
}

/**
 * Maps an open file (the mapping owns `fd` from here on, closing it on failure and on close)
 * and builds the region over it: formats `fresh` into it, or validates the mapped header.
 */
function mapRegion(
  symbols: Libc,
  path: string,
  fd: number,
  region: number | RegionLayout,
  options: RegionFileOptions,
): RegionFile {
  const regionBytes = typeof region === "number" ? region : region.regionBytes;
  const length = BigInt(regionBytes);
  const base = symbols.mmap(null, length, PROT_READ_WRITE, MAP_SHARED, fd, 0n);
  if (base === null || mapFailed(base)) {
    const reason = lastErrno(symbols);
    symbols.close(fd);
    throw new RegionFileError(path, "io", `mmap of ${regionBytes} bytes failed: ${reason}`);
  }
  const buffer = Deno.UnsafePointerView.getArrayBuffer(base, regionBytes);
  const waiter = wordWaiter(base, new Int32Array(buffer), {
    ...(options.wakeMethod === undefined ? {} : { method: options.wakeMethod }),
    ...(options.spinMicros === undefined ? {} : { spinMicros: options.spinMicros }),
  });
  const { memory } = atomicsMemory(buffer, (index) => waiter.wake(index));
  let release = () => {};
  const closed = new Promise<void>((resolve) => (release = resolve));
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    // Detach first: a view kept past close now throws a TypeError instead of touching memory
    // that is about to be unmapped.
    buffer.transfer(0);
    waiter.drain().then(() => {
      symbols.munmap(base, length);
      symbols.close(fd);
      release();
    });
  };
  if (typeof region !== "number") formatInto(memory, region);
  const layout = typeof region === "number"
    ? checkRegionHeader(new Int32Array(buffer), regionBytes)
    : ok(region);
  if (!layout.ok) {
    close();
    throw new RegionFileError(path, "invalid", layout.message);
  }
  return {
    memory,
    layout: layout.value,
    wait: (index, value, timeoutMs) => waiter.wait(index, value, timeoutMs),
    view: (byteOffset, length) => new Uint8Array(buffer, byteOffset, length),
    path,
    wakeMethod: waiter.method,
    close,
    closed,
  };
}

/**
 * Regions in files under `directory`, for the conformance suites: `create` makes a fresh file,
 * `attach` writes the bytes to a file and opens it through the same validation as
 * {@link openRegionFile}. Closing a region removes its file.
 *
 * @param directory an existing directory (a tmpfs such as `/dev/shm` keeps it in memory)
 * @param options how hosts wait
 * @returns the factory
 */
export function fileRegions(directory: string, options: RegionFileOptions = {}): RegionFactory {
  const fresh = () => `${directory}/region-${crypto.randomUUID()}`;
  const removingOnClose = (region: RegionFile): Region => ({
    ...region,
    close() {
      region.close();
      unlinkFile(region.path);
    },
  });
  return {
    name: `file (${options.wakeMethod ?? "futex"})`,
    create(config) {
      try {
        return ok(removingOnClose(createRegionFile(fresh(), config, options)));
      } catch (error) {
        if (error instanceof RegionFileError) return fail("EINVAL", error.message);
        throw error;
      }
    },
    attach(bytes) {
      const path = fresh();
      writeNewFile(path, bytes);
      try {
        return ok(removingOnClose(openRegionFile(path, options)));
      } catch (error) {
        unlinkFile(path);
        if (error instanceof RegionFileError) return fail("EINVAL", error.message);
        throw error;
      }
    },
  };
}
