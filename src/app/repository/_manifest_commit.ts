/**
 * Committing a manifest that arrives a line at a time (the wire form of `manifest_stream.ts`:
 * head, entries in path order, deleted paths): each line is checked as it comes (the head
 * must name the snapshot being written; entries under the tree rule) and written into the
 * writer's temporary manifest, so nothing holds the manifest whole. The backup server and a
 * local backup both commit this way.
 *
 * @module
 */

import {
  checkHead,
  ManifestChecker,
  type ManifestHead,
} from "../../core/backup/manifest_stream.ts";
import type { ChannelBytes } from "../../core/backup/manifest.ts";
import { checkEntryPath } from "../../core/backup/path_rules.ts";
import { RepositoryError } from "../errors.ts";
import type { SnapshotWriter } from "./snapshot_writer.ts";
import { checkLinks, ManifestFileWriter } from "./_manifest_file.ts";
import { ArchiveNeeds } from "../../core/backup/chain.ts";
import {
  CHECKED_RECORD_FORMAT,
  CHECKED_RECORD_VERSION,
  writeCheckedRecord,
} from "./_checked_record.ts";

/** What the server committed: the manifest's head and its entry counts (never its entries). */
export interface CommittedManifest extends ManifestHead {
  /** Entries in the manifest. */
  readonly entryCount: number;
  /** File entries in the manifest. */
  readonly fileCount: number;
  /** Paths of the parent that are gone. */
  readonly deletedCount: number;
}

/** What the manifest stream left to commit. */
export interface ReceivedManifest {
  readonly file: ManifestFileWriter;
  readonly head: Omit<ManifestHead, "channelBytes">;
  readonly counts: { entryCount: number; fileCount: number; deletedCount: number };
  /** Its hard links whose targets came first are confirmed once the file is complete. */
  readonly checker: ManifestChecker;
  /** The archives its files read from (the chain facts of its checked record). */
  readonly needs: ArchiveNeeds;
  /** Its files whose member has no offset (kept in its checked record). */
  readonly filesWithoutOffset: number;
}

function refuse(writer: SnapshotWriter, message: string): RepositoryError {
  return new RepositoryError("bad-commit", `snapshot ${writer.id}: invalid manifest: ${message}`);
}

/**
 * Checks a manifest line by line and writes it into the writer's temporary manifest: the head
 * first (this snapshot's id), then entries under the tree rule, then deleted paths.
 *
 * @param writer the snapshot being written
 * @param lines the manifest's lines (wire form)
 * @returns what {@link commitReceived} needs
 * @throws {RepositoryError} `bad-commit` naming the problem (the temporary manifest is removed)
 */
export async function receiveManifestLines(
  writer: SnapshotWriter,
  lines: AsyncIterable<string> | Iterable<string>,
): Promise<ReceivedManifest> {
  let file: ManifestFileWriter | undefined;
  let head: Omit<ManifestHead, "channelBytes"> | undefined;
  const checker = new ManifestChecker();
  const counts = { entryCount: 0, fileCount: 0, deletedCount: 0 };
  const needs = new ArchiveNeeds();
  let filesWithoutOffset = 0;
  try {
    for await (const line of lines) {
      const value: unknown = JSON.parse(line);
      if (file === undefined) {
        const checked = checkHead(value);
        if (!checked.ok) throw refuse(writer, checked.message);
        const { channelBytes: _counted, ...fields } = checked.value;
        if (fields.id !== writer.id) throw refuse(writer, `it is for ${fields.id}`);
        head = fields;
        file = await ManifestFileWriter.create(writer.manifestTempPath, fields);
      } else if (typeof value === "string") {
        const path = checkEntryPath(value);
        if (!path.ok) throw refuse(writer, `deleted: ${path.message}`);
        counts.deletedCount++;
        await file.deleted(value);
      } else {
        if (counts.deletedCount > 0) throw refuse(writer, "an entry after the deleted paths");
        const checked = checker.entry(value);
        if (!checked.ok) throw refuse(writer, checked.message);
        counts.entryCount++;
        if (checked.value.type === "file") {
          counts.fileCount++;
          needs.add(checked.value);
          if (checked.value.offset === undefined) filesWithoutOffset++;
        }
        await file.entry(line);
      }
    }
    if (file === undefined || head === undefined) throw refuse(writer, "it is empty");
    return { file, head, counts, checker, needs, filesWithoutOffset };
  } catch (error) {
    await file?.abort();
    throw error instanceof SyntaxError ? refuse(writer, "a line is not JSON") : error;
  }
}

/**
 * Finishes the temporary manifest with the channel counters, confirms the hard links whose
 * target came first, commits the snapshot, and writes its checked record (the manifest's
 * SHA-256 and chain facts, `_checked_record.ts`).
 *
 * @param writer the snapshot being written
 * @param received what {@link receiveManifestLines} returned
 * @param channelBytes the bytes that went through each channel
 * @returns the committed manifest's head and counts
 */
export async function commitReceived(
  writer: SnapshotWriter,
  received: ReceivedManifest,
  channelBytes: ChannelBytes,
): Promise<CommittedManifest> {
  await received.file.finish(channelBytes);
  await checkLinks(received.file.path, received.checker).catch(async (error) => {
    await Deno.remove(received.file.path).catch(() => {});
    throw refuse(writer, error instanceof Error ? error.message : String(error));
  });
  const committed = await writer.commitWritten({ ...received.head, channelBytes });
  // Past the commit point: without the record the next incremental checks this manifest in
  // full, so a record that cannot be written is no failure of the backup.
  await writeCheckedRecord(writer.repo, {
    format: CHECKED_RECORD_FORMAT,
    version: CHECKED_RECORD_VERSION,
    id: committed.id,
    manifest: received.file.written,
    entries: received.counts.entryCount,
    archives: received.needs.toRecord(),
    filesWithoutOffset: received.filesWithoutOffset,
  }).catch(() => {});
  return { ...committed, ...received.counts };
}
