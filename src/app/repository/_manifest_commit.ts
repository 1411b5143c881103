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
import { copyEntrySection, ParentLineCursor } from "./_parent_lines.ts";
import { ArchiveNeeds } from "../../core/backup/chain.ts";
import {
  CHECKED_RECORD_FORMAT,
  CHECKED_RECORD_VERSION,
  type CheckedRecord,
  writeCheckedRecord,
} from "./_checked_record.ts";
import { invariant } from "../../core/assert.ts";

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

/** The parent a manifest's run lines copy from (where the server offered them). */
export interface RunLinesParent {
  /** The parent's manifest file (line layout), read under the writer's lock. */
  readonly manifestPath: string;
  /**
   * The parent's checked record when its manifest file still hashes to it (`vouchingRecord`):
   * then a manifest that is one run of all the parent's entries and nothing else is copied
   * without checking the parent's lines again (see docs/trust.md).
   */
  readonly vouchingRecord?: () => Promise<CheckedRecord | undefined>;
}

/**
 * Checks a manifest line by line and writes it into the writer's temporary manifest: the head
 * first (this snapshot's id), then entries under the tree rule, then deleted paths. With
 * `parent` (the server offered run lines), a run line `[from,count]` (`manifest_stream.ts`)
 * stands for the parent's entries `from` .. `from + count - 1`: their lines are copied from the
 * parent's file and each is checked and written exactly as if the client had sent it, so the
 * manifest is byte for byte the one plain lines give. A run line that was not offered, is
 * malformed, goes back or past the parent, or puts entries out of path order is refused like
 * any other bad line. A manifest that is one run of all of a vouched parent's entries is copied
 * without the checks (its lines are those of a manifest checked whole, in the same order).
 *
 * @param writer the snapshot being written
 * @param lines the manifest's lines (wire form)
 * @param parent the parent's file, when run lines were offered
 * @returns what {@link commitReceived} needs
 * @throws {RepositoryError} `bad-commit` naming the problem (the temporary manifest is removed)
 */
export async function receiveManifestLines(
  writer: SnapshotWriter,
  lines: AsyncIterable<string> | Iterable<string>,
  parent?: RunLinesParent,
): Promise<ReceivedManifest> {
  let file: ManifestFileWriter | undefined;
  let head: Omit<ManifestHead, "channelBytes"> | undefined;
  const entries = new EntryIntake(writer);
  const runs = parent === undefined ? undefined : new RunCopier(writer, parent, entries);
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
        continue;
      }
      if (Array.isArray(value)) {
        if (runs === undefined) {
          throw refuse(writer, `run line ${line}, but the server offered none`);
        }
        await runs.take(value, line, file);
        continue;
      }
      await runs?.flush(file);
      if (typeof value === "string") {
        const path = checkEntryPath(value);
        if (!path.ok) throw refuse(writer, `deleted: ${path.message}`);
        entries.counts.deletedCount++;
        await file.deleted(value);
      } else await entries.take(value, line, file);
    }
    if (file === undefined || head === undefined) throw refuse(writer, "it is empty");
    await runs?.end(file);
    return { file, head, ...entries.received() };
  } catch (error) {
    await file?.abort();
    throw error instanceof SyntaxError ? refuse(writer, "a line is not JSON") : error;
  } finally {
    runs?.close();
  }
}

/**
 * Copies the parent's lines that run lines name. A first run of the whole parent is held back
 * until the next line: when none follows, the manifest is the parent's entries and nothing
 * else, and a vouched parent is copied without the checks.
 */
class RunCopier {
  #cursor: ParentLineCursor | undefined;
  #held: { from: number; count: number; line: string } | undefined;

  constructor(
    readonly writer: SnapshotWriter,
    readonly parent: RunLinesParent,
    readonly entries: EntryIntake,
  ) {}

  /** Takes one run line (parsed as an array). */
  async take(value: unknown[], line: string, file: ManifestFileWriter): Promise<void> {
    await this.flush(file);
    const run = checkRunLine(value);
    if (!run.ok) throw refuse(this.writer, run.message);
    const { from, count } = run.value;
    const first = this.#cursor === undefined && this.entries.counts.entryCount === 0;
    if (first && from === 0 && this.parent.vouchingRecord !== undefined) {
      this.#held = { from, count, line };
      return;
    }
    await this.#copy(from, count, line, file);
  }

  /** Copies a run held back, checked (another line follows it). */
  async flush(file: ManifestFileWriter): Promise<void> {
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) await this.#copy(held.from, held.count, held.line, file);
  }

  /** The manifest's end: a run held back is the whole manifest. */
  async end(file: ManifestFileWriter): Promise<void> {
    const held = this.#held;
    if (held === undefined) return;
    const record = await this.parent.vouchingRecord!();
    if (
      record === undefined || record.entries !== held.count ||
      record.filesWithoutOffset === undefined
    ) return await this.flush(file);
    this.#held = undefined;
    await this.entries.takeVouched(this.parent.manifestPath, record, file);
  }

  close(): void {
    this.#cursor?.close();
  }

  async #copy(from: number, count: number, line: string, file: ManifestFileWriter) {
    this.#cursor ??= await ParentLineCursor.open(this.parent.manifestPath);
    const where = `run ${line}: `;
    const problem = await this.#cursor.copy(from, count, (copied) => {
      return this.entries.take(JSON.parse(copied), copied, file, where);
    });
    if (problem !== undefined) throw refuse(this.writer, problem);
  }
}

/** Takes a manifest's entries in turn: each checked, counted and written. */
class EntryIntake {
  readonly checker = new ManifestChecker();
  readonly counts = { entryCount: 0, fileCount: 0, deletedCount: 0 };
  needs = new ArchiveNeeds();
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

  /**
   * Takes all of a vouched parent's entries, in its order, without checking them again: they
   * are the lines of a manifest whose every entry was checked at its commit (tree rule and hard
   * links included) and whose file still hashes to its checked record, so every rule between
   * them holds here too, and its chain facts are the record's. The lines are copied as bytes
   * (`copyEntrySection`), only counted on the way.
   *
   * @param manifestPath the parent's manifest file
   * @param record the parent's checked record, vouching for the file (with its count of files
   *   without an offset)
   * @param file the temporary manifest (no entry taken yet)
   */
  async takeVouched(
    manifestPath: string,
    record: CheckedRecord,
    file: ManifestFileWriter,
  ): Promise<void> {
    invariant(this.counts.entryCount === 0, "a vouched parent is copied into an empty manifest");
    const copied = await copyEntrySection(manifestPath, (bytes) => file.copyEntryBytes(bytes));
    if (copied.entries !== record.entries) {
      throw new RepositoryError(
        "corrupt",
        `${manifestPath}: ${copied.entries} entries, its checked record says ${record.entries}`,
      );
    }
    file.endCopy(copied.entries);
    this.counts.entryCount = copied.entries;
    this.counts.fileCount = copied.files;
    this.filesWithoutOffset = record.filesWithoutOffset!;
    this.needs = ArchiveNeeds.fromRecord(record.archives);
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
