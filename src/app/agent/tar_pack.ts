/**
 * Packs planned entries into a standard tar stream, in path order, hashing every file's bytes
 * as they are read (one read serves both). The archive leaves as `Uint8Array` chunks through an
 * async sink, which can be a repository writer or a socket.
 *
 * File bytes are read straight into two 2 MiB staging buffers that take turns going to the
 * sink; with the native file layer each read is one `pread` into the buffer, each file is
 * opened relative to its held directory (`_source_open.ts`), a file with holes is stored as a
 * GNU sparse 1.0 member (its map and data runs only), and extended attributes go into
 * `SCHILY.xattr.*` records. Archives with enough file bytes are hashed in a hash worker, one
 * message per staging buffer, so reading, hashing and sending overlap. The packing loop lets
 * the event loop run every few milliseconds (a host renews its storage lease on a timer).
 *
 * @module
 */

import type { OwnerNames, PackedFile, SourceEntry } from "../../core/backup/plan.ts";
import { recordPacked } from "../../core/backup/plan.ts";
import { EntryTable, STATE, TYPE_CODES } from "../../core/backup/entry_table.ts";
import { AT_FDCWD, O, openAt } from "../../adapters/fs_native.ts";
import { type SparseMap, sparseMapBytes } from "../repository/_tar_member.ts";
import {
  type BaseHeader,
  baseHeader,
  HeaderEncoder,
  type HeaderExtras,
  padding,
  type TarHeader,
} from "../repository/_tar_headers.ts";
import type { SkippedEntry } from "./tree_walk.ts";
import { type Hasher, InlineHasher, WorkerHasher } from "./_pack_hash.ts";
import {
  NativeSourceFiles,
  openSourceFile,
  type SourceFile,
  type SourceOpen,
} from "./_source_open.ts";
import { useNativeFs, Yielder } from "../_file_side.ts";
import { type FrameSink, FrameStage, PackStage } from "./_pack_stage.ts";

export type { FrameSink } from "./_pack_stage.ts";

export { startHashWorker } from "./_pack_hash.ts";

/**
 * Receives archive chunks in order; the next chunk waits until the promise settles. The chunk's
 * memory is reused once the promise settles: a sink that keeps the bytes must copy them.
 */
export type ChunkSink = (chunk: Uint8Array) => Promise<void>;

/** Archive bytes buffered between reading and the sink: two staging buffers of half this. */
export const PACK_BUFFER_BYTES = 4 << 20;

/** Default size of one file read. */
export const READ_CHUNK_BYTES = 1 << 20;

/** Archives with at least this many file bytes hash in a Worker, off the reading thread. */
export const HASH_WORKER_MIN_BYTES = 32 << 20;

const BLOCK_BYTES = 512;
const END_OF_ARCHIVE_BYTES = 1024;

/**
 * The archive size packing makes, before packing starts (PAX headers and sparse files change
 * it): one header block per entry, file data padded to blocks, the end marker.
 *
 * @param entries the entries to pack, or a planned table (its changed entries)
 * @returns the estimated archive bytes
 */
export function archiveBytesEstimate(entries: readonly SourceEntry[] | EntryTable): number {
  let bytes = END_OF_ARCHIVE_BYTES;
  const add = (type: number, size: number) => {
    bytes += BLOCK_BYTES;
    if (type === TYPE_CODES.file) bytes += size + padding(size);
  };
  if (entries instanceof EntryTable) {
    for (let i = 0; i < entries.count; i++) {
      if (entries.states[i] === STATE.changed) add(entries.types[i]!, entries.sizes[i]!);
    }
  } else {
    for (const e of entries) add(TYPE_CODES[e.type], e.type === "file" ? e.sizeBytes : 0);
  }
  return bytes;
}

/** What packing produced. */
export interface PackResult {
  /** Hash and size of every file archived whole. */
  readonly packed: Map<string, PackedFile>;
  /** Files left out (vanished, unreadable, or changed size while read). */
  readonly skipped: SkippedEntry[];
  /** Bytes handed to the sink. */
  readonly archiveBytes: number;
}

/** What {@link packTable} produced (the files' results are recorded in the table). */
export interface TablePackResult {
  /** Entries left out or not fully read, with reasons. */
  readonly skipped: SkippedEntry[];
  /** Bytes handed to the sink. */
  readonly archiveBytes: number;
  /** Files archived. */
  readonly files: number;
  /** Their bytes (a sparse file's real size). */
  readonly fileBytes: number;
}

/** Options of {@link packEntries}. */
export interface PackOptions {
  /** Directory the entry paths are relative to. */
  readonly root: string;
  /** Entries to archive, parents before children (usually `plan.changed`). */
  readonly entries: readonly SourceEntry[];
  /**
   * Where the archive goes: chunks copied on from staging buffers, or frames written in place
   * (file bytes read straight into the reserved space and hashed there, on this thread).
   */
  readonly sink: ChunkSink | FrameSink;
  readonly readChunkBytes?: number;
  /**
   * A port to a hash worker the caller started (see {@link startHashWorker}); by default
   * packing starts its own when there is enough to hash.
   */
  readonly hashWorker?: () => Promise<MessagePort>;
  /** Names of owner ids for the headers' uname and gname. */
  readonly ownerNames?: OwnerNames;
  /** False packs by path even when the native layer is there (tests of the fallback). */
  readonly native?: boolean;
}

/** Options of {@link packTable}. */
export interface TablePackOptions extends Omit<PackOptions, "entries"> {
  /** The planned table: its changed entries are packed, and their results recorded in it. */
  readonly table: EntryTable;
  /** The new snapshot's id (the data reference of the files packed). */
  readonly snapshotId: string;
}

/**
 * The archive being built in two staging buffers: one fills (file bytes are read straight into
 * it and hashed there) while the sink takes the other.
 */
class Stager extends PackStage {
  readonly #buffers: [Uint8Array, Uint8Array];
  #current: 0 | 1 = 0;
  #used = 0;
  #sending: Promise<void> = Promise.resolve();
  /** The hash ticket of each buffer: it is not refilled before its pieces are hashed. */
  readonly #tickets: [number, number] = [0, 0];

  constructor(readonly sink: ChunkSink, hasher: Hasher, bufferBytes: number) {
    super(hasher);
    // Shared, so the hash worker reads the pieces where they are.
    const shared = () => new Uint8Array(new SharedArrayBuffer(bufferBytes));
    this.#buffers = [shared(), shared()];
  }

  #buffer(): Uint8Array {
    return this.#buffers[this.#current];
  }

  /** Free space of the current buffer, handing it to the sink first when it is full. */
  async room(): Promise<Uint8Array> {
    if (this.#used === this.#buffer().length) await this.flush();
    return this.roomNow();
  }

  /** The current buffer's free space (empty when full; the buffer is never in flight). */
  roomNow(): Uint8Array {
    return this.#buffer().subarray(this.#used);
  }

  /** Marks `n` bytes of {@link room} as archive bytes, hashed as file `file`'s if given. */
  commit(n: number, file?: number): void {
    if (file !== undefined && n > 0) {
      this.hasher.update(file, this.#buffer().subarray(this.#used, this.#used + n));
    }
    this.#used += n;
  }

  /** Archive offset of the next byte appended. */
  position(): number {
    return this.archiveBytes + this.#used;
  }

  /** Hands the current buffer to the sink once the other one is back. */
  async flush(): Promise<void> {
    await this.#sending;
    if (this.#used === 0) return;
    const chunk = this.#buffer().subarray(0, this.#used);
    this.#tickets[this.#current] = this.hasher.seal(this.#buffer().buffer as SharedArrayBuffer);
    this.archiveBytes += this.#used;
    this.#sending = this.sink(chunk);
    this.#sending.catch(() => {}); // awaited by the next flush or by settle()
    this.#current = this.#current === 0 ? 1 : 0;
    this.#used = 0;
    await this.hasher.released(this.#tickets[this.#current]);
  }

  /** Waits for the chunk in flight, whatever its outcome. */
  async settle(): Promise<void> {
    await this.#sending.catch(() => {});
  }
}

/** Results arriving as the hasher finishes files; {@link drained} waits for the last. */
class Recorder {
  #outstanding = 0;
  #failure: unknown;
  #drained: (() => void) | undefined;

  track(result: Promise<void>): void {
    this.#outstanding++;
    result.catch((error) => (this.#failure ??= error)).finally(() => {
      if (--this.#outstanding === 0) this.#drained?.();
    });
  }

  async drained(): Promise<void> {
    if (this.#outstanding > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/** A primary name of a hard-linked file: its links wait for its hash. */
interface Primary {
  readonly path: string;
  readonly sha256: Promise<string | null>;
}

/** Everything one packing run shares. */
interface PackRun {
  readonly table: EntryTable;
  readonly snapshotId: string;
  readonly stager: PackStage;
  readonly encoder: HeaderEncoder;
  readonly names: OwnerNames | undefined;
  readonly chunkBytes: number;
  readonly skipped: SkippedEntry[];
  readonly recorder: Recorder;
  readonly primaries: Map<string, Primary>;
  readonly open: (index: number) => SourceOpen | Promise<SourceOpen>;
  files: number;
  fileBytes: number;
}

async function appendAll(stager: PackStage, blocks: Uint8Array[]): Promise<void> {
  for (const block of blocks) await stager.append(block);
}

/**
 * Reads `length` bytes of `file` at `position` into the archive, hashed; zeros for what it
 * could not read. Returns how many bytes were missing (the file shrank).
 */
async function copyRun(
  run: PackRun,
  file: SourceFile,
  id: number,
  position: number,
  length: number,
): Promise<number> {
  let done = 0;
  // Bounded: each turn copies at least one byte or ends on a short read.
  while (done < length) {
    const room = await run.stager.room();
    const view = room.subarray(0, Math.min(run.chunkBytes, length - done, room.length));
    const n = await file.read(view, position + done);
    if (n === 0) break;
    run.stager.commit(n, id);
    done += n;
  }
  if (done < length) await run.stager.zeros(length - done, id);
  return length - done;
}

/** Packs one regular file (or a hard link to one packed before); undefined when done at once. */
function packFile(run: PackRun, index: number): Promise<void> | undefined {
  const key = run.table.linkKey(index);
  const primary = key === undefined ? undefined : run.primaries.get(key);
  if (primary !== undefined) return packLink(run, index, primary);
  const opened = run.open(index);
  if (opened instanceof Promise) return opened.then((o) => packOpened(run, index, o));
  return packOpened(run, index, opened);
}

/** Packs a hard link to a file packed before; records it once the file's hash is known. */
async function packLink(run: PackRun, index: number, primary: Primary): Promise<void> {
  const { table, stager } = run;
  const entry = table.source(index) as SourceEntry & { type: "file" };
  const offset = stager.position();
  const base = baseHeader(entry, run.names);
  await appendAll(stager, run.encoder.encode({ ...base, type: "link", linkname: primary.path }));
  const facts = { sizeBytes: entry.sizeBytes, offset, hardlink: primary.path };
  run.recorder.track(primary.sha256.then((sha256) => {
    recordPacked(table, index, sha256 === null ? undefined : { ...facts, sha256 }, run.snapshotId);
  }));
}

/** Records a packed file's result (`short`: it shrank while read, and is left out). */
function recordFile(run: PackRun, index: number, facts: PackedFile, short: boolean): void {
  const path = run.table.path(index);
  if (short) run.skipped.push({ path, reason: "shrank during the backup" });
  recordPacked(run.table, index, short ? undefined : facts, run.snapshotId);
}

/** Packs an opened file (or records why it is skipped); undefined when done at once. */
function packOpened(run: PackRun, index: number, opened: SourceOpen): Promise<void> | undefined {
  const entry = run.table.source(index) as SourceEntry & { type: "file" };
  if (!opened.ok) {
    run.skipped.push({ path: entry.path, reason: opened.reason });
    recordPacked(run.table, index, undefined, run.snapshotId);
    return undefined;
  }
  const file = opened.file;
  let closeHere = true;
  try {
    const xattrs = file.xattrs(entry.path, run.skipped);
    const map = file.sizeBytes === entry.sizeBytes ? file.dataMap() : null;
    if (map === null && packDenseNow(run, index, entry, file, xattrs)) return undefined;
    closeHere = false;
    return packAwaiting(run, index, entry, file, { map, xattrs });
  } finally {
    if (closeHere) void file.close();
  }
}

/**
 * Packs a small file whole into the room at hand, synchronously, when it fits there and both
 * the file's reads and the hasher are synchronous (the native layer, hashing in place): header,
 * data, padding, digest and record with no promise (a tree of small files was about twenty
 * promises per file). False, with nothing committed, when it does not fit.
 */
function packDenseNow(
  run: PackRun,
  index: number,
  entry: SourceEntry & { type: "file" },
  file: SourceFile,
  xattrs: Record<string, string> | undefined,
): boolean {
  const { stager } = run;
  const size = entry.sizeBytes;
  const endNow = stager.hasher.endNow;
  const room = stager.roomNow();
  const dataBytes = size + padding(size);
  if (file.readNow === undefined || endNow === undefined || room === undefined) return false;
  if (room.length < dataBytes + BLOCK_BYTES || size > run.chunkBytes) return false;
  const header: TarHeader = { ...baseHeader(entry, run.names), type: "file", size };
  const extras = xattrs === undefined ? {} : { xattrs };
  let headerBytes = BLOCK_BYTES;
  if (!run.encoder.encodeInto(header, extras, room)) {
    const blocks = run.encoder.encode(header, extras);
    headerBytes = blocks.reduce((sum, block) => sum + block.length, 0);
    if (room.length < headerBytes + dataBytes) return false;
    let at = 0;
    for (const block of blocks) room.set(block, (at += block.length) - block.length);
  }
  const offset = stager.position();
  stager.commit(headerBytes);
  let done = 0;
  // Bounded: each turn reads at least one byte or ends on a short read.
  while (done < size) {
    const n = file.readNow(room.subarray(headerBytes + done, headerBytes + size), done);
    if (n === 0) break;
    done += n;
  }
  room.fill(0, headerBytes + done, headerBytes + dataBytes); // what it could not read, padding
  stager.commit(size, index);
  stager.commit(dataBytes - size);
  const sha256 = endNow.call(stager.hasher, index);
  const short = done < size;
  const key = run.table.linkKey(index);
  if (key !== undefined) {
    run.primaries.set(key, { path: entry.path, sha256: Promise.resolve(short ? null : sha256) });
  }
  const facts: PackedFile = { sha256, sizeBytes: size, offset, ...(xattrs && { xattrs }) };
  recordFile(run, index, facts, short);
  run.files++;
  run.fileBytes += size;
  return true;
}

/** Packs an opened file through the stage's waiting calls; records its result later. */
async function packAwaiting(
  run: PackRun,
  index: number,
  entry: SourceEntry & { type: "file" },
  file: SourceFile,
  found: { map: SparseMap | null; xattrs: Record<string, string> | undefined },
): Promise<void> {
  const { map, xattrs } = found;
  const offset = run.stager.position();
  const key = run.table.linkKey(index);
  const base = baseHeader(entry, run.names);
  try {
    // Not awaited here: a digest arrives once its staging buffer went to the hash worker.
    const { sha256 } = map === null
      ? await packDense(run, index, entry, base, file, xattrs)
      : await packSparse(run, index, entry, base, file, { map, xattrs });
    const whole = sha256.then((sha) => sha.short ? null : sha.sha256);
    if (key !== undefined) run.primaries.set(key, { path: entry.path, sha256: whole });
    run.recorder.track(sha256.then(({ sha256: sha, short, storedBytes }) => {
      const facts: PackedFile = {
        sha256: sha,
        sizeBytes: entry.sizeBytes,
        offset,
        ...(map === null ? {} : { sparse: { storedBytes } }),
        ...(xattrs === undefined ? {} : { xattrs }),
      };
      recordFile(run, index, facts, short);
    }));
    run.files++;
    run.fileBytes += entry.sizeBytes;
  } finally {
    await file.close();
  }
}

/** A packed file's hash, whether it shrank while read, and its stored bytes. */
interface Hashed {
  readonly sha256: string;
  readonly short: boolean;
  readonly storedBytes: number;
}

async function packDense(
  run: PackRun,
  index: number,
  entry: SourceEntry & { type: "file" },
  base: BaseHeader,
  file: SourceFile,
  xattrs: Record<string, string> | undefined,
): Promise<{ sha256: Promise<Hashed> }> {
  const header: TarHeader = { ...base, type: "file", size: entry.sizeBytes };
  await appendAll(run.stager, run.encoder.encode(header, { xattrs }));
  const missing = await copyRun(run, file, index, 0, entry.sizeBytes);
  const digest = run.stager.hasher.end(index);
  await run.stager.zeros(padding(entry.sizeBytes));
  const storedBytes = entry.sizeBytes;
  return { sha256: digest.then((sha256) => ({ sha256, short: missing > 0, storedBytes })) };
}

async function packSparse(
  run: PackRun,
  index: number,
  entry: SourceEntry & { type: "file" },
  base: BaseHeader,
  file: SourceFile,
  found: { map: SparseMap; xattrs: Record<string, string> | undefined },
): Promise<{ sha256: Promise<Hashed> }> {
  const mapBytes = sparseMapBytes(found.map);
  const storedBytes = mapBytes.length + found.map.reduce((sum, [, n]) => sum + n, 0);
  const header: TarHeader = { ...base, type: "file", size: storedBytes };
  const extras: HeaderExtras = { xattrs: found.xattrs, sparseRealSize: entry.sizeBytes };
  await appendAll(run.stager, run.encoder.encode(header, extras));
  await run.stager.append(mapBytes, index);
  let missing = 0;
  for (const [position, length] of found.map) {
    missing += await copyRun(run, file, index, position, length);
  }
  const digest = run.stager.hasher.end(index);
  await run.stager.zeros(padding(storedBytes));
  return { sha256: digest.then((sha256) => ({ sha256, short: missing > 0, storedBytes })) };
}

async function packOther(run: PackRun, index: number): Promise<void> {
  const { table } = run;
  const entry = table.source(index);
  const base = baseHeader(entry, run.names);
  if (entry.type === "dir") {
    const xattrs = table.extras.get(index)?.xattrs;
    await appendAll(run.stager, run.encoder.encode({ ...base, type: "directory" }, { xattrs }));
  } else if (entry.type === "symlink") {
    await appendAll(
      run.stager,
      run.encoder.encode({ ...base, type: "symlink", linkname: entry.target }),
    );
  }
  table.states[index] = STATE.packed;
}

async function produce(run: PackRun): Promise<void> {
  const yielder = new Yielder();
  for (let index = 0; index < run.table.count; index++) {
    if (run.table.states[index] !== STATE.changed) continue;
    if (yielder.due()) await yielder.maybe();
    if (run.table.types[index] !== TYPE_CODES.file) await packOther(run, index);
    else {
      const packing = packFile(run, index);
      if (packing !== undefined) await packing;
    }
  }
  await run.stager.zeros(END_OF_ARCHIVE_BYTES);
  await run.stager.flush();
  await run.stager.flush(); // waits for the last chunk
  await run.recorder.drained();
}

/** How files are opened: relative to held directories (native) or by path. */
function opener(options: TablePackOptions): {
  open: (index: number) => SourceOpen | Promise<SourceOpen>;
  close: () => void;
} {
  const table = options.table;
  if (!useNativeFs(options.native ?? true)) {
    return {
      open: (index) => openSourceFile(`${options.root}/${table.path(index)}`, table.source(index)),
      close: () => {},
    };
  }
  const rootFd = openAt(AT_FDCWD, options.root, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
  const files = new NativeSourceFiles(rootFd, (path) => {
    const index = table.dirIndex(path);
    if (index < 0 || table.devs[index]! < 0) return undefined;
    return { dev: table.devs[index]!, ino: table.inos[index]! };
  });
  return { open: (index) => files.open(table.source(index)), close: () => files.close() };
}

/**
 * Packs the changed entries of a planned table into a tar stream delivered to `sink`, and
 * records each file's hash, offset and rare fields in the table (a file left out is marked
 * skipped).
 *
 * @param options root, table, snapshot id, sink
 * @returns skipped entries, archive size, files and bytes packed
 */
export async function packTable(options: TablePackOptions): Promise<TablePackResult> {
  const fileBytes = archiveBytesEstimate(options.table);
  const sink = options.sink;
  // In place, a piece is hashed before its frame is committed (the ring reuses the space).
  const hasher = typeof sink === "function" && fileBytes >= HASH_WORKER_MIN_BYTES
    ? await WorkerHasher.open(options.hashWorker)
    : new InlineHasher();
  const stager = typeof sink === "function"
    ? new Stager(sink, hasher, PACK_BUFFER_BYTES / 2)
    : new FrameStage(sink, hasher, PACK_BUFFER_BYTES / 2);
  const files = opener(options);
  const run: PackRun = {
    table: options.table,
    snapshotId: options.snapshotId,
    stager,
    encoder: new HeaderEncoder(),
    names: options.ownerNames,
    chunkBytes: options.readChunkBytes ?? READ_CHUNK_BYTES,
    skipped: [],
    recorder: new Recorder(),
    primaries: new Map(),
    open: files.open,
    files: 0,
    fileBytes: 0,
  };
  try {
    await produce(run);
  } finally {
    files.close();
    await stager.settle();
    hasher.close();
  }
  return {
    skipped: run.skipped,
    archiveBytes: stager.archiveBytes,
    files: run.files,
    fileBytes: run.fileBytes,
  };
}

/**
 * Packs `entries` from `root` into a tar stream delivered to `sink` (the object form of
 * {@link packTable}).
 *
 * @param options root, entries, sink and read size
 * @returns hashes of the archived files, skipped files and the archive size
 *
 * @example Packing one file into memory
 * ```ts
 * import assert from "node:assert/strict";
 * import { packEntries } from "./tar_pack.ts";
 * const root = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${root}/a.txt`, "hello");
 * const chunks: Uint8Array[] = [];
 * const result = await packEntries({
 *   root,
 *   entries: [{ type: "file", path: "a.txt", sizeBytes: 5, mode: 0o644, mtimeMs: 0 }],
 *   sink: async (chunk) => { chunks.push(chunk); },
 * });
 * assert.equal(result.archiveBytes % 512, 0);
 * assert.equal(result.packed.get("a.txt")?.sha256.length, 64);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function packEntries(options: PackOptions): Promise<PackResult> {
  const table = new EntryTable();
  const sorted = [...options.entries].sort((a, b) => (a.path < b.path ? -1 : 1));
  for (const entry of sorted) table.add(entry);
  const snapshotId = "packEntries";
  const result = await packTable({ ...options, table, snapshotId });
  const packed = new Map<string, PackedFile>();
  for (let i = 0; i < table.count; i++) {
    if (table.states[i] !== STATE.packed || table.types[i] !== TYPE_CODES.file) continue;
    const extras = table.extras.get(i) ?? {};
    packed.set(table.path(i), {
      sha256: table.sha256(i),
      sizeBytes: table.sizes[i]!,
      offset: table.offsets[i]!,
      ...(extras.hardlink === undefined ? {} : { hardlink: extras.hardlink }),
      ...(extras.sparse === undefined ? {} : { sparse: extras.sparse }),
      ...(extras.xattrs === undefined ? {} : { xattrs: extras.xattrs }),
    });
  }
  return { packed, skipped: result.skipped, archiveBytes: result.archiveBytes };
}
