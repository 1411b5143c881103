/**
 * Packs planned entries into a standard tar stream (tar-stream: ustar headers, PAX for long or
 * non-ASCII names), hashing every file's bytes as they are read: one read serves both. The
 * archive leaves as `Uint8Array` chunks through an async sink, which can be a repository
 * writer or a socket; the next chunk of a file is read while the sink takes the previous one.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import tar from "tar-stream";
import type { PackedFile, SourceEntry } from "../core/backup/plan.ts";
import type { SkippedEntry } from "./tree_walk.ts";

/** Receives archive chunks in order; the next chunk waits until the promise settles. */
export type ChunkSink = (chunk: Uint8Array) => Promise<void>;

/** Archive bytes buffered between reading and the sink (lets reads run ahead of writes). */
export const PACK_BUFFER_BYTES = 8 << 20;

/** Default size of one file read. */
export const READ_CHUNK_BYTES = 1 << 20;

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
}

/** Resolves when `stream` accepts more writes; rejects if it dies first. */
function drained(stream: tar.Pack | ReturnType<tar.Pack["entry"]>): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroying || stream.destroyed) {
      reject(new Error("tar stream closed while writing"));
      return;
    }
    const done = () => {
      stream.off("drain", done);
      stream.off("close", closed);
      resolve();
    };
    const closed = () => {
      stream.off("drain", done);
      reject(new Error("tar stream closed while writing"));
    };
    stream.on("drain", done);
    stream.on("close", closed);
  });
}

function entryDone(
  pack: tar.Pack,
  header: Partial<tar.Header> & { name: string },
): { sink: ReturnType<tar.Pack["entry"]>; done: Promise<void> } {
  let sink!: ReturnType<tar.Pack["entry"]>;
  const done = new Promise<void>((resolve, reject) => {
    sink = pack.entry(header, (error) => (error ? reject(error) : resolve()));
  });
  done.catch(() => {}); // awaited later; a destroyed pack must not leave it unhandled meanwhile
  return { sink, done };
}

/** Starts one read; a read left pending when packing fails must not become unhandled. */
function readSome(file: Deno.FsFile, want: number): Promise<Buffer | null> {
  const buffer = Buffer.from(new ArrayBuffer(want));
  const read = file.read(buffer).then((n) => (n === null ? null : buffer.subarray(0, n)));
  read.catch(() => {});
  return read;
}

/** Writes one file's bytes (exactly `sizeBytes`, zero-padded if it shrank); returns its hash. */
async function packFile(
  pack: tar.Pack,
  entry: SourceEntry & { type: "file" },
  file: Deno.FsFile,
  chunkBytes: number,
): Promise<{ sha256: string; short: boolean }> {
  const hash = createHash("sha256");
  const header = { name: entry.path, type: "file" as const, size: entry.sizeBytes };
  const { sink, done } = entryDone(pack, {
    ...header,
    mode: entry.mode,
    mtime: new Date(entry.mtimeMs),
  });
  let remaining = entry.sizeBytes;
  let short = false;
  let next = remaining > 0 ? readSome(file, Math.min(chunkBytes, remaining)) : null;
  while (next !== null) {
    const read = await next;
    if (read === null) short = true;
    const data = read ?? Buffer.alloc(Math.min(chunkBytes, remaining));
    remaining -= data.byteLength;
    if (remaining === 0) next = null;
    else next = short ? Promise.resolve(null) : readSome(file, Math.min(chunkBytes, remaining));
    if (!short) hash.update(data);
    if (!sink.write(data)) await drained(sink);
  }
  sink.end(undefined);
  await done;
  return { sha256: hash.digest("hex"), short };
}

async function openFile(root: string, path: string): Promise<Deno.FsFile | string> {
  try {
    return await Deno.open(`${root}/${path}`, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "vanished during the backup";
    if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
    return error instanceof Error ? error.message : String(error);
  }
}

async function produce(pack: tar.Pack, options: PackOptions, result: PackResult) {
  const chunkBytes = options.readChunkBytes ?? READ_CHUNK_BYTES;
  for (const entry of options.entries) {
    const base = { name: entry.path, mode: entry.mode, mtime: new Date(entry.mtimeMs) };
    if (entry.type === "dir") await entryDone(pack, { ...base, type: "directory" }).done;
    if (entry.type === "symlink") {
      await entryDone(pack, { ...base, type: "symlink", linkname: entry.target }).done;
    }
    if (entry.type !== "file") continue;
    const file = await openFile(options.root, entry.path);
    if (typeof file === "string") {
      result.skipped.push({ path: entry.path, reason: file });
      continue;
    }
    try {
      const { sha256, short } = await packFile(pack, entry, file, chunkBytes);
      if (short) result.skipped.push({ path: entry.path, reason: "shrank during the backup" });
      else result.packed.set(entry.path, { sha256, sizeBytes: entry.sizeBytes });
    } finally {
      file.close();
    }
  }
  pack.finalize();
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
  const pack = tar.pack({ highWaterMark: PACK_BUFFER_BYTES });
  const result = { packed: new Map<string, PackedFile>(), skipped: [], archiveBytes: 0 };
  const consumer = (async () => {
    for await (const chunk of pack as AsyncIterable<Uint8Array>) {
      result.archiveBytes += chunk.byteLength;
      await options.sink(chunk);
    }
  })();
  let sinkError: unknown = undefined;
  const watched = consumer.catch((error) => {
    sinkError = error;
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
  });
  try {
    await produce(pack, options, result);
  } catch (error) {
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
    await watched;
    throw sinkError ?? error;
  }
  await watched;
  if (sinkError !== undefined) throw sinkError;
  return result;
}
