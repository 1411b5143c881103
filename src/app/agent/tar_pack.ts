/**
 * Packs planned entries into a standard tar stream (tar-stream: ustar headers, PAX for long or
 * non-ASCII names), hashing every file's bytes as they are read: one read serves both. The
 * archive leaves as `Uint8Array` chunks through an async sink, which can be a repository
 * writer or a socket; the next chunk of a file is read while the sink takes the previous one.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import tar from "tar-stream";
import type { OwnerNames, PackedFile, SourceEntry } from "../../core/backup/plan.ts";
import { hasRawBytes, pathToBytes } from "../../core/backup/path_rules.ts";
import { paxRecords } from "../repository/_tar_member.ts";
import type { SkippedEntry } from "./tree_walk.ts";
import type { HashReply, HashRequest } from "./_hash_worker.ts";
import type { FileHandle } from "node:fs/promises";
import { openSourceFile } from "./_source_open.ts";

/**
 * Receives archive chunks in order; the next chunk waits until the promise settles. The chunk's
 * memory is reused once the promise settles: a sink that keeps the bytes must copy them.
 */
export type ChunkSink = (chunk: Uint8Array) => Promise<void>;

/** Archive bytes buffered between reading and the sink: two staging buffers of half this. */
export const PACK_BUFFER_BYTES = 4 << 20;

/** Default size of one file read (one hash step; the next read runs while it is hashed). */
export const READ_CHUNK_BYTES = 1 << 20;

/** Archives with at least this many file bytes hash in a Worker, off the reading thread. */
export const HASH_WORKER_MIN_BYTES = 32 << 20;

const BLOCK_BYTES = 512;
const END_OF_ARCHIVE_BYTES = 1024;

/**
 * The archive size packing `entries` makes, before packing starts (a PAX header adds to it when
 * a name needs one): one header block per entry, file data padded to blocks, the end marker.
 *
 * @param entries the entries to pack
 * @returns the estimated archive bytes
 */
export function archiveBytesEstimate(entries: readonly SourceEntry[]): number {
  let bytes = END_OF_ARCHIVE_BYTES;
  for (const entry of entries) {
    bytes += BLOCK_BYTES;
    if (entry.type === "file") bytes += entry.sizeBytes + padding(entry.sizeBytes);
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

/** Options of {@link packEntries}. */
export interface PackOptions {
  /** Directory the entry paths are relative to. */
  readonly root: string;
  /** Entries to archive, parents before children (usually `plan.changed`). */
  readonly entries: readonly SourceEntry[];
  readonly sink: ChunkSink;
  readonly readChunkBytes?: number;
  /**
   * A port to a hash worker the caller started (see {@link startHashWorker}); by default
   * packing starts its own when there is enough to hash.
   */
  readonly hashWorker?: () => Promise<MessagePort>;
  /** Names of owner ids for the headers' uname and gname. */
  readonly ownerNames?: OwnerNames;
}

type TarHeader = Partial<tar.Header> & { name: string; type: tar.Header["type"] };

/**
 * Tar headers from tar-stream's own encoder (ustar, or a PAX header first for long or non-ASCII
 * names), without its per-entry stream machinery: a pack whose output is captured per call.
 */
interface PackInternals {
  push(chunk: Uint8Array | null): boolean;
  _encode(header: TarHeader): void;
}

class HeaderEncoder {
  readonly #pack: PackInternals;
  #out: Uint8Array[] = [];

  constructor() {
    this.#pack = tar.pack() as unknown as PackInternals;
    this.#pack.push = (chunk) => {
      if (chunk !== null) this.#out.push(chunk);
      return true;
    };
  }

  /** The header blocks of one entry, defaults applied as `pack.entry` applies them. */
  encode(header: TarHeader): Uint8Array[] {
    const full: TarHeader = {
      ...header,
      size: !header.size || header.type === "symlink" ? 0 : header.size,
      mode: header.mode || (header.type === "directory" ? 0o755 : 0o644),
      uid: fitsUstarId(header.uid) ? header.uid : 0,
      gid: fitsUstarId(header.gid) ? header.gid : 0,
      uname: fitsUstarName(header.uname) ? header.uname : undefined,
      gname: fitsUstarName(header.gname) ? header.gname : undefined,
    };
    this.#out = [];
    this.#pack._encode(full);
    return this.#out;
  }
}

/** Largest id the 7-digit octal ustar field holds (larger ones go into a PAX record). */
const USTAR_ID_MAX = 0o777777;

function fitsUstarId(id: number | undefined): id is number {
  return id !== undefined && id <= USTAR_ID_MAX;
}

function fitsUstarName(name: string | undefined): name is string {
  return name !== undefined && /^[\x21-\x7e]{1,31}$/.test(name);
}

/**
 * SHA-256 of files whose pieces sit in the staging buffers. `update` returns a ticket; the
 * piece's memory may be reused once `released(ticket)` resolves.
 */
interface Hasher {
  update(file: number, piece: Uint8Array): number;
  digest(file: number): Promise<string>;
  released(ticket: number): Promise<void>;
  close(): void;
}

/** Hashes on this thread, at once. */
class InlineHasher implements Hasher {
  readonly #hashes = new Map<number, Hash>();

  update(file: number, piece: Uint8Array): number {
    let hash = this.#hashes.get(file);
    if (hash === undefined) this.#hashes.set(file, hash = createHash("sha256"));
    hash.update(piece);
    return 0;
  }

  digest(file: number): Promise<string> {
    const hash = this.#hashes.get(file) ?? createHash("sha256");
    this.#hashes.delete(file);
    return Promise.resolve(hash.digest("hex"));
  }

  released(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}

/** What a hash worker is reached through: the Worker itself or a port to it. */
interface HashEndpoint {
  postMessage(message: HashRequest): void;
  onmessage: ((event: MessageEvent<HashReply>) => void) | null;
}

/** Starts a hash worker (`_hash_worker.ts`). */
export function startHashWorker(): Worker {
  return new Worker(new URL("./_hash_worker.ts", import.meta.url), { type: "module" });
}

/** Hashes in a hash worker, which answers every request in order. */
class WorkerHasher implements Hasher {
  #posted = 0;
  #answered = 0;
  #failure: Error | undefined;
  /** Waiters by ticket, in ticket order (answers arrive in order). */
  readonly #waiters: Array<{ ticket: number; resolve(): void; reject(error: Error): void }> = [];
  readonly #digests = new Map<number, { resolve(sha256: string): void; reject(e: Error): void }>();

  constructor(readonly endpoint: HashEndpoint, readonly onClose: () => void) {
    endpoint.onmessage = (event: MessageEvent<HashReply>) => {
      const reply = event.data;
      this.#answered = reply.seq;
      if (reply.sha256 !== undefined) {
        this.#digests.get(reply.seq)?.resolve(reply.sha256);
        this.#digests.delete(reply.seq);
      }
      // Bounded by the waiters present.
      while (this.#waiters.length > 0 && this.#waiters[0]!.ticket <= this.#answered) {
        this.#waiters.shift()!.resolve();
      }
    };
  }

  /** A hasher on a port from `source`, or on a Worker of its own. */
  static async open(source: (() => Promise<MessagePort>) | undefined): Promise<WorkerHasher> {
    if (source !== undefined) {
      const port = await source();
      return new WorkerHasher(port as unknown as HashEndpoint, () => port.close());
    }
    const worker = startHashWorker();
    const hasher: WorkerHasher = new WorkerHasher(
      worker as unknown as HashEndpoint,
      () => worker.terminate(),
    );
    worker.onerror = (event) => {
      event.preventDefault();
      hasher.#fail(new Error(`hash worker failed: ${event.message}`));
    };
    return hasher;
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#failure);
    for (const digest of this.#digests.values()) digest.reject(this.#failure);
    this.#digests.clear();
  }

  #post(request: HashRequest): void {
    if (this.#failure !== undefined) throw this.#failure;
    this.endpoint.postMessage(request);
  }

  update(file: number, piece: Uint8Array): number {
    const seq = ++this.#posted;
    const buffer = piece.buffer as SharedArrayBuffer;
    this.#post({ seq, file, buffer, offset: piece.byteOffset, length: piece.length });
    return seq;
  }

  digest(file: number): Promise<string> {
    const seq = ++this.#posted;
    const result = new Promise<string>((resolve, reject) => {
      this.#digests.set(seq, { resolve, reject });
    });
    result.catch(() => {}); // awaited when the results are collected
    this.#post({ seq, file, end: true });
    return result;
  }

  released(ticket: number): Promise<void> {
    if (ticket <= this.#answered) return Promise.resolve();
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ ticket, resolve, reject }));
  }

  close(): void {
    this.onClose();
    this.#fail(new Error("hash worker closed"));
  }
}

/**
 * The archive being built in two staging buffers: one fills (file bytes are read straight into
 * it and hashed there) while the sink takes the other.
 */
class Stager {
  readonly #buffers: [Uint8Array, Uint8Array];
  #current: 0 | 1 = 0;
  #used = 0;
  #sending: Promise<void> = Promise.resolve();
  /** The last hash ticket of each buffer: it is not refilled before that piece is hashed. */
  readonly #tickets: [number, number] = [0, 0];
  archiveBytes = 0;

  constructor(readonly sink: ChunkSink, readonly hasher: Hasher, bufferBytes: number) {
    // Shared, so the hash worker reads the pieces where they are.
    const shared = () => new Uint8Array(new SharedArrayBuffer(bufferBytes));
    this.#buffers = [shared(), shared()];
  }

  /** Hashes a piece of the current buffer (before the buffer is refilled). */
  hash(file: number, piece: Uint8Array): void {
    const index = piece.buffer === this.#buffers[0].buffer ? 0 : 1;
    this.#tickets[index] = this.hasher.update(file, piece);
  }

  #buffer(): Uint8Array {
    return this.#buffers[this.#current];
  }

  /** Free space of the current buffer, handing it to the sink first when it is full. */
  async room(): Promise<Uint8Array> {
    if (this.#used === this.#buffer().length) await this.flush();
    return this.#buffer().subarray(this.#used);
  }

  /** Marks `n` bytes of {@link room} as archive bytes. */
  commit(n: number): void {
    this.#used += n;
  }

  async append(bytes: Uint8Array): Promise<void> {
    // Bounded: each turn copies at least one byte (room() is never empty).
    for (let offset = 0; offset < bytes.length;) {
      const room = await this.room();
      const n = Math.min(room.length, bytes.length - offset);
      room.set(bytes.subarray(offset, offset + n));
      this.commit(n);
      offset += n;
    }
  }

  async zeros(count: number): Promise<void> {
    // Bounded: each turn zeroes at least one byte.
    for (let left = count; left > 0;) {
      const room = await this.room();
      const n = Math.min(room.length, left);
      room.fill(0, 0, n);
      this.commit(n);
      left -= n;
    }
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

/** Starts one read; a read left pending when packing fails must not become unhandled. */
function readInto(file: FileHandle, into: Uint8Array): Promise<number | null> {
  const read = file.read(into, 0, into.length, null).then((result) => result.bytesRead);
  read.catch(() => {});
  return read;
}

/**
 * Writes one file's bytes (exactly `sizeBytes`, zero-padded if it shrank) read straight into the
 * staging buffer; hashes each read while the next one runs. Returns the hash, or short.
 */
async function packFile(
  stager: Stager,
  entry: SourceEntry & { type: "file" },
  file: FileHandle,
  chunkBytes: number,
  fileId: number,
): Promise<{ sha256: Promise<string>; short: boolean }> {
  let remaining = entry.sizeBytes;
  let room = remaining > 0 ? await stager.room() : null;
  let view = room?.subarray(0, Math.min(chunkBytes, remaining, room.length));
  let next = view === undefined ? null : readInto(file, view);
  // Bounded: each turn consumes at least one byte of `remaining` or ends on a short read.
  while (next !== null && view !== undefined) {
    const n = await next;
    if (n === null || n === 0) break;
    const got = view.subarray(0, n);
    stager.commit(n);
    remaining -= n;
    next = null;
    // A worker hasher reads `got` while the next read runs; its buffer is not refilled before.
    stager.hash(fileId, got);
    if (remaining > 0) {
      room = await stager.room();
      view = room.subarray(0, Math.min(chunkBytes, remaining, room.length));
      next = readInto(file, view);
    }
  }
  const sha256 = stager.hasher.digest(fileId);
  const short = remaining > 0;
  if (short) await stager.zeros(remaining);
  await stager.zeros(padding(entry.sizeBytes));
  return { sha256, short };
}

function padding(sizeBytes: number): number {
  const over = sizeBytes % BLOCK_BYTES;
  return over === 0 ? 0 : BLOCK_BYTES - over;
}

/** A file packed (or linked) so far: its hash is known once the hasher is done. */
interface Pending {
  readonly path: string;
  readonly sizeBytes: number;
  readonly sha256: Promise<string>;
  readonly offset: number;
  /** False when the file shrank while read (then it and its links are skipped). */
  readonly whole: boolean;
  readonly hardlink?: Pending;
}

/** Header fields every entry carries: name, mode, mtime, owners. */
function baseHeader(entry: SourceEntry, names: OwnerNames | undefined) {
  return {
    name: entry.path,
    mode: entry.mode,
    mtime: new Date(entry.mtimeMs),
    uid: entry.uid,
    gid: entry.gid,
    uname: entry.uid === undefined ? undefined : names?.user(entry.uid),
    gname: entry.gid === undefined ? undefined : names?.group(entry.gid),
  };
}

/**
 * Header blocks of one entry. Names that are not UTF-8, and owner ids too large for ustar, go
 * into a PAX header written here with raw values (`hdrcharset=BINARY`, as GNU tar reads it);
 * the ustar header then carries an ASCII stand-in name.
 */
function entryHeader(encoder: HeaderEncoder, header: TarHeader): Uint8Array[] {
  const records: Array<[string, Uint8Array | string]> = [];
  const rawName = hasRawBytes(header.name);
  const rawLink = header.linkname !== undefined && hasRawBytes(header.linkname);
  if (rawName || rawLink) records.push(["hdrcharset", "BINARY"]);
  if (rawName) records.push(["path", pathToBytes(header.name)]);
  if (rawLink) records.push(["linkpath", pathToBytes(header.linkname!)]);
  if (header.uid !== undefined && !fitsUstarId(header.uid)) {
    records.push(["uid", String(header.uid)]);
  }
  if (header.gid !== undefined && !fitsUstarId(header.gid)) {
    records.push(["gid", String(header.gid)]);
  }
  if (records.length === 0) return encoder.encode(header);
  const pax = paxRecords(records);
  const standIn = (name: string) => name.replace(/[^\x21-\x7e]/g, "_").slice(-99);
  return [
    ...encoder.encode({
      name: "PaxHeader",
      type: "pax-header" as TarHeader["type"],
      size: pax.length,
      mtime: header.mtime,
    }),
    pax,
    new Uint8Array(padding(pax.length)),
    ...encoder.encode({
      ...header,
      name: rawName ? standIn(header.name) : header.name,
      linkname: rawLink ? standIn(header.linkname!) : header.linkname,
    }),
  ];
}

/**
 * The header blocks packing writes for a directory or a symlink (consolidate writes those a
 * synthetic full archive lacks with it).
 *
 * @param entry the directory or symlink
 * @param ownerNames names of its owner ids, for uname and gname
 * @returns the blocks (a PAX header first when the name or target needs one)
 */
export function headerBlocks(
  entry: SourceEntry & { readonly type: "dir" | "symlink" },
  ownerNames?: OwnerNames,
): Uint8Array[] {
  const base = baseHeader(entry, ownerNames);
  const header: TarHeader = entry.type === "dir"
    ? { ...base, type: "directory" }
    : { ...base, type: "symlink", linkname: entry.target };
  return entryHeader(new HeaderEncoder(), header);
}

async function produce(stager: Stager, options: PackOptions, result: PackResult) {
  const pending: Pending[] = [];
  const primaries = new Map<string, Pending>();
  const chunkBytes = options.readChunkBytes ?? READ_CHUNK_BYTES;
  const encoder = new HeaderEncoder();
  const appendAll = async (blocks: Uint8Array[]) => {
    for (const block of blocks) await stager.append(block);
  };
  for (const entry of options.entries) {
    const base = baseHeader(entry, options.ownerNames);
    const offset = stager.position();
    if (entry.type === "dir") await appendAll(entryHeader(encoder, { ...base, type: "directory" }));
    if (entry.type === "symlink") {
      await appendAll(entryHeader(encoder, { ...base, type: "symlink", linkname: entry.target }));
    }
    if (entry.type !== "file") continue;
    const primary = entry.linkKey === undefined ? undefined : primaries.get(entry.linkKey);
    if (primary !== undefined) {
      await appendAll(entryHeader(encoder, { ...base, type: "link", linkname: primary.path }));
      pending.push({ ...primary, path: entry.path, offset, hardlink: primary });
      continue;
    }
    const opened = await openSourceFile(`${options.root}/${entry.path}`, entry);
    if (!opened.ok) {
      result.skipped.push({ path: entry.path, reason: opened.reason });
      continue;
    }
    const file = opened.handle;
    try {
      await appendAll(entryHeader(encoder, { ...base, type: "file", size: entry.sizeBytes }));
      const id = pending.length;
      const { sha256, short } = await packFile(stager, entry, file, chunkBytes, id);
      if (short) result.skipped.push({ path: entry.path, reason: "shrank during the backup" });
      const packed = {
        path: entry.path,
        sizeBytes: entry.sizeBytes,
        sha256,
        offset,
        whole: !short,
      };
      pending.push(packed);
      if (entry.linkKey !== undefined && !short) primaries.set(entry.linkKey, packed);
    } finally {
      await file.close();
    }
  }
  await stager.zeros(END_OF_ARCHIVE_BYTES);
  await stager.flush();
  await stager.flush(); // waits for the last chunk
  for (const file of pending) {
    const sha256 = await file.sha256;
    if (!file.whole) continue;
    const hardlink = file.hardlink === undefined ? {} : { hardlink: file.hardlink.path };
    result.packed.set(file.path, {
      sha256,
      sizeBytes: file.sizeBytes,
      offset: file.offset,
      ...hardlink,
    });
  }
}

/**
 * Packs `entries` from `root` into a tar stream delivered to `sink`.
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
  const fileBytes = options.entries.reduce(
    (sum, e) => sum + (e.type === "file" ? e.sizeBytes : 0),
    0,
  );
  const hasher = fileBytes >= HASH_WORKER_MIN_BYTES
    ? await WorkerHasher.open(options.hashWorker)
    : new InlineHasher();
  const stager = new Stager(options.sink, hasher, PACK_BUFFER_BYTES / 2);
  const result = { packed: new Map<string, PackedFile>(), skipped: [], archiveBytes: 0 };
  try {
    await produce(stager, options, result);
  } finally {
    await stager.settle();
    hasher.close();
  }
  return { ...result, archiveBytes: stager.archiveBytes };
}
