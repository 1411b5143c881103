/**
 * Reads one snapshot archive and hands the bodies of the wanted files to a handler, in archive
 * order. Entries that are not wanted (other files, directories, symlinks, anything crafted) are
 * read past and never used: restore writes only paths that come from a validated manifest.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import tar from "tar-stream";
import type { FileEntry } from "../../core/backup/manifest.ts";
import fs from "node:fs";
import { pathToBytes } from "../../core/backup/path_rules.ts";
import { RestoreError } from "../errors.ts";
import { AT_FDCWD, close, O, openAt, pread, statFd } from "../../adapters/fs_native.ts";
import { useNativeFs } from "../_file_side.ts";
import {
  type ArchiveReader,
  MemberError,
  readMemberHead,
  readSparseMap,
  type SparseMap,
} from "./_tar_member.ts";

/** Size of one archive read. */
const ARCHIVE_READ_BYTES = 1 << 20;
/** Size of the scratch buffer {@link openMember} can reuse: one read. */
export const MEMBER_SCRATCH_BYTES = ARCHIVE_READ_BYTES;
/** Archive bytes buffered ahead of the entry being handled. */
const EXTRACT_BUFFER_BYTES = 8 << 20;
/** Most tar entries read from one archive (crafted archives could hold millions). */
const ARCHIVE_ENTRIES_MAX = 10_000_000;

/** Receives one wanted file's body; must consume it. */
export type FileHandler = (entry: FileEntry, body: AsyncIterable<Uint8Array>) => Promise<void>;

function drained(stream: tar.Extract): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroying || stream.destroyed) return reject(new Error("archive reader closed"));
    const done = (): void => {
      stream.off("close", closed);
      resolve();
    };
    const closed = (): void => {
      stream.off("drain", done);
      reject(new Error("archive reader closed"));
    };
    stream.once("drain", done);
    stream.once("close", closed);
  });
}

async function feed(path: string, extract: tar.Extract): Promise<void> {
  const file = await openArchive(path);
  try {
    for (let reads = 0, at = 0; reads < Number.MAX_SAFE_INTEGER; reads++) {
      const buffer = Buffer.from(new ArrayBuffer(ARCHIVE_READ_BYTES));
      const n = await file.read(buffer, at);
      if (n === 0) break;
      at += n;
      if (!extract.write(buffer.subarray(0, n))) await drained(extract);
    }
    extract.end(undefined);
  } finally {
    file.close();
  }
}

/**
 * Reads `archivePath` and calls `onFile` for each wanted file, once.
 *
 * @param archivePath the snapshot's tar file
 * @param snapshot the snapshot id (for messages)
 * @param wanted file entries by path whose bytes this archive holds
 * @param onFile consumes one file's body
 * @returns the paths found (a wanted path missing here is missing data)
 * @throws {RestoreError} `bad-archive` when the archive is unreadable or not a tar
 */
export async function readArchiveFiles(
  archivePath: string,
  snapshot: string,
  wanted: ReadonlyMap<string, FileEntry>,
  onFile: FileHandler,
): Promise<Set<string>> {
  const extract = tar.extract({ highWaterMark: EXTRACT_BUFFER_BYTES });
  const feeding = feed(archivePath, extract).catch((error) => {
    extract.destroy(error instanceof Error ? error : new Error(String(error)));
  });
  const seen = new Set<string>();
  let count = 0;
  try {
    for await (const entry of extract) {
      if (++count > ARCHIVE_ENTRIES_MAX) {
        throw new Error(`more than ${ARCHIVE_ENTRIES_MAX} entries`);
      }
      const file = entry.header.type === "file" ? wanted.get(entry.header.name) : undefined;
      if (file !== undefined && !seen.has(file.path)) {
        seen.add(file.path);
        await onFile(file, entry as AsyncIterable<Uint8Array>);
      }
      for await (const _ of entry as AsyncIterable<Uint8Array>) { /* read past */ }
    }
  } catch (error) {
    extract.destroy();
    await feeding;
    if (error instanceof RestoreError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new RestoreError(
      "bad-archive",
      `archive of snapshot ${snapshot} (${archivePath}) is unreadable: ${reason}`,
      {
        cause: error,
      },
    );
  }
  await feeding;
  return seen;
}

/**
 * Consumes a body, hashing it, and checks size and SHA-256 against the manifest entry.
 *
 * @param entry the manifest entry
 * @param snapshot the snapshot whose archive holds the bytes
 * @param body the file's bytes
 * @param each called with every chunk (to write it), may be omitted
 * @throws {RestoreError} `size-mismatch` or `hash-mismatch`, naming the file
 */
export async function checkedBody(
  entry: FileEntry,
  snapshot: string,
  body: AsyncIterable<Uint8Array>,
  each?: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    sizeBytes += chunk.byteLength;
    if (each !== undefined) await each(chunk);
  }
  const name = `file ${JSON.stringify(entry.path)} (snapshot ${snapshot})`;
  if (sizeBytes !== entry.sizeBytes) {
    throw new RestoreError(
      "size-mismatch",
      `${name}: ${sizeBytes} bytes, manifest says ${entry.sizeBytes}`,
    );
  }
  if (hash.digest("hex") !== entry.sha256) {
    throw new RestoreError("hash-mismatch", `${name}: SHA-256 does not match the manifest`);
  }
}

/** One piece of a member's stored bytes: hashed always, written at `position` when given. */
export interface MemberPiece {
  readonly bytes: Uint8Array;
  readonly position?: number;
}

/**
 * Opens an archive for positional reads; it must be a regular file (never blocks on a FIFO).
 * With the native layer each read is one `pread` into the caller's buffer.
 *
 * @param path the archive
 * @returns a reader
 */
export async function openArchive(path: string): Promise<ArchiveReader> {
  if (useNativeFs()) return openArchiveNative(path);
  const handle = await fs.promises.open(path, fs.constants.O_RDONLY | ARCHIVE_NONBLOCK);
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    throw new RestoreError("read-failed", `archive ${path} is not a regular file`);
  }
  return {
    read: async (into, position) => (await handle.read(into, 0, into.length, position)).bytesRead,
    close: () => void handle.close().catch(() => {}),
  };
}

/** O_NONBLOCK (the same value on x86_64 and aarch64). */
const ARCHIVE_NONBLOCK = 0o4000;

function openArchiveNative(path: string): ArchiveReader {
  const fd = openAt(AT_FDCWD, path, O.RDONLY | O.NONBLOCK);
  if (statFd(fd).type !== "file") {
    close(fd);
    throw new RestoreError("read-failed", `archive ${path} is not a regular file`);
  }
  let closed = false;
  return {
    read: (into, position) => Promise.resolve(pread(fd, into, position)),
    close: () => {
      if (!closed) close(fd);
      closed = true;
    },
  };
}

/**
 * Where a data piece is read: given the most bytes wanted and the piece's position in the file,
 * 1 to `maxBytes` bytes of writable space (a data frame reserved in a storage ring, say).
 */
export type PieceRoom = (maxBytes: number, position: number) => Promise<Uint8Array>;

/**
 * Reads the member of `entry` at its offset: checks its header names `memberPath`, then yields
 * its stored bytes (a sparse member's map is yielded without a position: hashed, not written).
 *
 * @param reader the archive
 * @param offset the member's first header block
 * @param memberPath the entry path the member must carry
 * @param scratch when given (a buffer of at least {@link MEMBER_SCRATCH_BYTES}), every data
 *   piece is a view into it, valid only until the next piece is asked for: a consumer that
 *   writes each piece before pulling the next (a restore) allocates nothing per file; a
 *   {@link PieceRoom} gives the space of each piece instead (a sender reads straight into its
 *   send ring); one that keeps pieces passes none
 * @returns the member's real size and its pieces
 * @throws {MemberError} when the headers are damaged or name another member
 */
export async function openMember(
  reader: ArchiveReader,
  offset: number,
  memberPath: string,
  scratch?: Uint8Array | PieceRoom,
): Promise<{ realSize: number; storedBytes: number; pieces: AsyncIterable<MemberPiece> }> {
  if (scratch instanceof Uint8Array && scratch.length < MEMBER_SCRATCH_BYTES) {
    throw new RangeError(`a scratch buffer of ${scratch.length} bytes is under one read`);
  }
  const head = await readMemberHead(reader, offset);
  const wanted = pathToBytes(memberPath);
  if (head.name.length !== wanted.length || head.name.some((b, i) => b !== wanted[i])) {
    throw new MemberError(`the member at byte ${offset} is not ${JSON.stringify(memberPath)}`);
  }
  if (head.typeFlag !== "0") {
    throw new MemberError(`the member at byte ${offset} is not a file (type ${head.typeFlag})`);
  }
  const sparse = head.sparseRealSize === undefined ? undefined : await readSparseMap(reader, head);
  const segments: SparseMap = sparse?.map ?? [[0, head.storedBytes]];
  async function* pieces(): AsyncGenerator<MemberPiece> {
    let at = head.dataOffset;
    if (sparse !== undefined) {
      const map = new Uint8Array(sparse.mapBytes);
      await readFully(reader, map, at);
      yield { bytes: map };
      at += sparse.mapBytes;
    }
    for (const [position, length] of segments) {
      // Bounded: each turn reads one chunk of the segment.
      for (let done = 0; done < length;) {
        const size = Math.min(ARCHIVE_READ_BYTES, length - done);
        const chunk = typeof scratch === "function"
          ? (await scratch(size, position + done)).subarray(0, size)
          : scratch?.subarray(0, size) ?? new Uint8Array(size);
        await readFully(reader, chunk, at);
        yield { bytes: chunk, position: position + done };
        at += chunk.length;
        done += chunk.length;
      }
    }
  }
  return {
    realSize: head.sparseRealSize ?? head.storedBytes,
    storedBytes: head.storedBytes,
    pieces: pieces(),
  };
}

async function readFully(reader: ArchiveReader, into: Uint8Array, position: number) {
  // Bounded: each turn reads at least one byte or throws.
  for (let at = 0; at < into.length;) {
    const n = await reader.read(into.subarray(at), position + at);
    if (n === 0) throw new MemberError(`archive ends at byte ${position + at}`);
    at += n;
  }
}

/** Bytes one windowed read fetches: several small members' headers and data at once. */
const WINDOW_BYTES = 32 << 10;

/**
 * An archive reader that reads ahead a window at a time: members read in offset order (a
 * restore in path order) are served from memory, one `pread` for many small files; reads of a
 * window or more go straight through.
 *
 * @param inner the archive
 * @returns the windowed reader (closing it closes `inner`)
 */
export function windowedReader(inner: ArchiveReader): ArchiveReader {
  const window = new Uint8Array(WINDOW_BYTES);
  let start = 0;
  let length = 0;
  return {
    async read(into, position) {
      if (into.length >= WINDOW_BYTES) return await inner.read(into, position);
      if (position < start || position >= start + length) {
        start = position;
        length = await inner.read(window, position);
        if (length === 0) return 0;
      }
      const n = Math.min(into.length, start + length - position);
      into.set(window.subarray(position - start, position - start + n));
      return n;
    },
    close: () => inner.close(),
  };
}
