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
import type { FileEntry } from "../core/backup/manifest.ts";
import { RestoreError } from "./errors.ts";

/** Size of one archive read. */
const ARCHIVE_READ_BYTES = 1 << 20;
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
  const file = await Deno.open(path, { read: true });
  try {
    for (let reads = 0; reads < Number.MAX_SAFE_INTEGER; reads++) {
      const buffer = Buffer.from(new ArrayBuffer(ARCHIVE_READ_BYTES));
      const n = await file.read(buffer);
      if (n === null) break;
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
