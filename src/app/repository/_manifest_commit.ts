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
  checkRunLine,
  ManifestChecker,
  type ManifestHead,
} from "../../core/backup/manifest_stream.ts";
import type { ChannelBytes } from "../../core/backup/manifest.ts";
import { checkEntryPath } from "../../core/backup/path_rules.ts";
import { RepositoryError } from "../errors.ts";
import type { SnapshotWriter } from "./snapshot_writer.ts";
import { checkLinks, ManifestFileWriter } from "./_manifest_file.ts";
import { ParentLineCursor } from "./_parent_lines.ts";
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
 * first (this snapshot's id), then entries under the tree rule, then deleted paths. With
 * `parentManifestPath` (the server offered run lines), a run line `[from,count]`
 * (`manifest_stream.ts`) stands for the parent's entries `from` .. `from + count - 1`: their
 * lines are copied from the parent's file and each is checked and written exactly as if the
 * client had sent it, so the manifest is byte for byte the one plain lines give. A run line
 * that was not offered, is malformed, goes back or past the parent, or puts entries out of
 * path order is refused like any other bad line.
 *
 * @param writer the snapshot being written
 * @param lines the manifest's lines (wire form)
 * @param parentManifestPath the parent's manifest file (line layout), when run lines were
 *   offered: read under the writer's lock, so it is the file `chooseParent` chose
 * @returns what {@link commitReceived} needs
 * @throws {RepositoryError} `bad-commit` naming the problem (the temporary manifest is removed)
 */
export async function receiveManifestLines(
  writer: SnapshotWriter,
  lines: AsyncIterable<string> | Iterable<string>,
  parentManifestPath?: string,
): Promise<ReceivedManifest> {
  let file: ManifestFileWriter | undefined;
  let head: Omit<ManifestHead, "channelBytes"> | undefined;
  let parentLines: ParentLineCursor | undefined;
  const entries = new EntryIntake(writer);
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
        entries.counts.deletedCount++;
        await file.deleted(value);
      } else if (Array.isArray(value)) {
        if (parentManifestPath === undefined) {
          throw refuse(writer, `run line ${line}, but the server offered none`);
        }
        const run = checkRunLine(value);
        if (!run.ok) throw refuse(writer, run.message);
        parentLines ??= await ParentLineCursor.open(parentManifestPath);
        const into = file;
        const { from, count } = run.value;
        const problem = await parentLines.copy(from, count, (copied) => {
          return entries.take(JSON.parse(copied), copied, into, `run ${line}: `);
        });
        if (problem !== undefined) throw refuse(writer, problem);
      } else await entries.take(value, line, file);
    }
    if (file === undefined || head === undefined) throw refuse(writer, "it is empty");
    return { file, head, ...entries.received() };
  } catch (error) {
    await file?.abort();
    throw error instanceof SyntaxError ? refuse(writer, "a line is not JSON") : error;
  } finally {
    parentLines?.close();
  }
}

/** Takes a manifest's entries in turn: each checked, counted and written. */
class EntryIntake {
  readonly checker = new ManifestChecker();
  readonly counts = { entryCount: 0, fileCount: 0, deletedCount: 0 };
  readonly needs = new ArchiveNeeds();
  filesWithoutOffset = 0;

  constructor(readonly writer: SnapshotWriter) {}

  /**
   * Checks one entry (under the tree rule) and writes its line.
   *
   * @param value the parsed line
   * @param line the line
   * @param file the temporary manifest
   * @param where what a refusal names first (a run line, for a copied line)
   */
  async take(value: unknown, line: string, file: ManifestFileWriter, where = ""): Promise<void> {
    const { counts, writer } = this;
    if (counts.deletedCount > 0) throw refuse(writer, `${where}an entry after the deleted paths`);
    const checked = this.checker.entry(value);
    if (!checked.ok) throw refuse(writer, `${where}${checked.message}`);
    counts.entryCount++;
    if (checked.value.type === "file") {
      counts.fileCount++;
      this.needs.add(checked.value);
      if (checked.value.offset === undefined) this.filesWithoutOffset++;
    }
    await file.entry(line);
  }

  /** What the entries left for the commit. */
  received(): Omit<ReceivedManifest, "file" | "head"> {
    const { checker, counts, needs, filesWithoutOffset } = this;
    return { checker, counts, needs, filesWithoutOffset };
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
