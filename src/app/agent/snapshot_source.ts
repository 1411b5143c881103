/**
 * The client half of a backup: find what to archive (walk or database copy), plan against the
 * parent's entries as the server streams them, pack into any chunk sink, and hand the manifest
 * back a line at a time. Nothing here touches the repository, so the byte stream can cross a
 * channel. Entries live in a compact table ({@link EntryTable}), never as one object each.
 *
 * @module
 */

import {
  type ChannelBytes,
  type Manifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  parseManifest,
} from "../../core/backup/manifest.ts";
import { checkEntry, checkHead, type ManifestHead } from "../../core/backup/manifest_stream.ts";
import { entryLines, manifestEntryAt, ParentMerge } from "../../core/backup/plan.ts";
import { EntryTable, STATE, TYPE_CODES } from "../../core/backup/entry_table.ts";
import { copyDatabase, openDatabaseSource } from "./db_snapshot.ts";
import { SourceError } from "../errors.ts";
import { type ChunkSink, type FrameSink, packTable } from "./tar_pack.ts";
import { type SkippedEntry, type WalkedTree, walkSource } from "./tree_walk.ts";
import { ownerNames } from "../repository/_owners.ts";
import { Yielder } from "../_file_side.ts";

/** Which channel carried the archive, for the manifest's counters. */
export type ArchiveChannel = "storage" | "network" | "none";

/** The parent as a server streams it: its head, then its entries in path order. */
export interface ParentStream {
  /** The parent's head (unchecked: it is checked here). */
  readonly head: unknown;
  /** Its entries in path order (unchecked values: each is checked here). */
  readonly entries?: AsyncIterable<unknown>;
  /**
   * Instead of {@link entries}: the entries' lines as the parent's file has them (each parsed
   * and checked here), so the plan can tell which new lines are the parent's, for run lines.
   */
  readonly entryLines?: AsyncIterable<string>;
}

/** Options of {@link prepareSnapshot}. */
export interface SourceOptions {
  /** `fs`: a directory tree (default); `db`: one SQLite database file. */
  readonly mode?: "fs" | "db";
  /** The directory (fs) or database file (db). */
  readonly source: string;
  /** The source as recorded in manifests (from {@link sourceIdentity}). */
  readonly sourceId: string;
  /** The id the server gave the snapshot (`SnapshotWriter.id`). */
  readonly snapshotId: string;
  /**
   * The parent manifest as plain JSON from the server, or null for a full snapshot (small
   * uses: {@link parentStream} streams it instead).
   */
  readonly parent: unknown;
  /** The parent streamed (what the backup client receives); takes the place of `parent`. */
  readonly parentStream?: ParentStream;
  /** Creation time written into the manifest. */
  readonly nowMs?: number;
  /** A port to a hash worker the caller started (see `PackOptions.hashWorker`). */
  readonly hashWorker?: () => Promise<MessagePort>;
  /** A walk of `source` the caller started earlier (fs mode), instead of walking here. */
  readonly walked?: Promise<WalkedTree>;
  /** Paths of the source left out (fs mode, when walking here). */
  readonly exclude?: readonly string[];
  /** Test hook: runs after the walk and the plan, before the first file is opened for packing. */
  readonly beforePack?: () => Promise<void>;
}

/** What the plan decided, in counts. */
export interface PlanSummary {
  /** Entries to archive. */
  readonly changed: number;
  /** Entries kept from the parent. */
  readonly unchanged: number;
  /** Paths of the parent that are gone. */
  readonly deleted: number;
  /** Bytes of the files to archive. */
  readonly changedFileBytes: number;
}

/** A planned snapshot, ready to pack. */
export interface PreparedSnapshot {
  /** The entries, in path order, each marked changed or unchanged. */
  readonly table: EntryTable;
  /** What the plan decided. */
  readonly plan: PlanSummary;
  /** Entries the walk left out, with reasons (packing may add more). */
  readonly skipped: SkippedEntry[];
  /** Packs the changed entries into `sink` and returns the manifest to commit. */
  pack(sink: ChunkSink | FrameSink, channel?: ArchiveChannel): Promise<PackedSnapshot>;
  /** Removes temporary files (the database copy). Idempotent. */
  close(): Promise<void>;
}

/** The result of packing. */
export interface PackedSnapshot {
  /** The manifest's head (the channel counters are filled in by the server). */
  readonly head: ManifestHead;
  /**
   * The manifest as lines (the wire form of `manifest_stream.ts`): the head, each entry in
   * path order, each deleted path. What a server commits.
   *
   * @param runs name runs of the parent's unchanged lines with run lines (only for a server
   *   that offered to take them; only a parent given as {@link ParentStream.entryLines} has
   *   lines to name)
   */
  lines(runs?: boolean): Iterable<string>;
  /** The whole manifest as one value (small snapshots and tests: builds every entry object). */
  readonly manifest: Manifest;
  readonly skipped: SkippedEntry[];
  readonly files: number;
  readonly fileBytes: number;
}

/**
 * The identity of a source as recorded in manifests: its absolute real path.
 *
 * @param source directory or database file
 * @returns the absolute path
 * @throws {SourceError} `not-found` when it does not exist
 *
 * @example The identity of a directory
 * ```ts
 * import assert from "node:assert/strict";
 * import { sourceIdentity } from "./snapshot_source.ts";
 * assert.ok((await sourceIdentity(".")).startsWith("/"));
 * ```
 */
export async function sourceIdentity(source: string): Promise<string> {
  try {
    return await Deno.realPath(source);
  } catch (error) {
    throw new SourceError(
      "not-found",
      `source ${source} does not exist or cannot be read: ${error}`,
    );
  }
}

/**
 * Checks that a source can be backed up at all, before anything is written anywhere: a
 * directory (fs) or a readable SQLite database (db).
 *
 * @param source the directory or database file
 * @param mode `fs` or `db`
 * @throws {SourceError} naming the source
 *
 * @example Refusing a missing source
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkSource } from "./snapshot_source.ts";
 * await assert.rejects(checkSource("/no/such/dir", "fs"), { code: "not-found" });
 * ```
 */
export async function checkSource(source: string, mode: "fs" | "db"): Promise<void> {
  if (mode === "db") {
    (await openDatabaseSource(source)).close();
    return;
  }
  const info = await Deno.stat(source).catch((error) => {
    const code = error instanceof Deno.errors.NotFound ? "not-found" : "unreadable";
    throw new SourceError(
      code,
      `source ${source}: ${error instanceof Error ? error.message : error}`,
    );
  });
  if (!info.isDirectory) {
    throw new SourceError("not-a-directory", `source ${source} is not a directory`);
  }
}

/** A parent given whole (plain JSON), as a stream. */
function streamOfManifest(value: unknown): ParentStream | null {
  if (value === null || value === undefined) return null;
  const parsed = parseManifest(value);
  if (!parsed.ok) {
    throw new SourceError("unreadable", `parent manifest is invalid: ${parsed.message}`);
  }
  const { entries, deleted: _deleted, ...head } = parsed.manifest;
  const ordered = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    head,
    entries: (async function* () {
      yield* ordered;
    })(),
  };
}

/** What planning against the parent found. */
interface PlannedAgainst {
  readonly parentId: string | null;
  readonly deleted: string[];
  readonly inParent: (index: number) => boolean;
  /** `ParentMerge.parentLineOf`: where an entry's line is the parent's (-1 elsewhere). */
  readonly parentLineOf: (index: number) => number;
}

/** The parent's entries as values, each with its line when the stream gives lines. */
async function* parentItems(
  parent: ParentStream,
): AsyncGenerator<{ value: unknown; line?: string }> {
  if (parent.entryLines !== undefined) {
    for await (const line of parent.entryLines) yield { value: parsedParentLine(line), line };
    return;
  }
  for await (const value of parent.entries ?? []) yield { value };
}

function parsedParentLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new SourceError("unreadable", "parent manifest is invalid: a line is not JSON");
  }
}

/** Plans `table` against the parent's stream; returns the parent's id and the deleted paths. */
async function planAgainst(
  table: EntryTable,
  parent: ParentStream | null,
): Promise<PlannedAgainst> {
  if (parent === null) {
    return { parentId: null, deleted: [], inParent: () => false, parentLineOf: () => -1 };
  }
  const head = checkHead(parent.head);
  if (!head.ok) throw new SourceError("unreadable", `parent manifest is invalid: ${head.message}`);
  const merge = new ParentMerge(table);
  const yielder = new Yielder();
  for await (const item of parentItems(parent)) {
    const checked = checkEntry(item.value);
    if (!checked.ok) {
      throw new SourceError("unreadable", `parent manifest is invalid: ${checked.message}`);
    }
    if (!merge.next(checked.value, item.line)) {
      throw new SourceError(
        "unreadable",
        `parent manifest is out of path order at ${JSON.stringify(checked.value.path)}`,
      );
    }
    await yielder.maybe();
  }
  const deleted = merge.finish();
  return {
    parentId: head.value.id,
    deleted,
    inParent: (i) => merge.inParent(i),
    parentLineOf: (i) => merge.parentLineOf(i),
  };
}

async function findEntries(options: SourceOptions) {
  if (options.mode === "db") {
    const copy = await copyDatabase(options.source, options.nowMs);
    const table = new EntryTable();
    table.add(copy.entry);
    return { root: copy.root, table, skipped: [], close: copy.remove };
  }
  const walked = await (options.walked ?? walkSource(options.source, { exclude: options.exclude }));
  return { root: options.source, ...walked, close: () => Promise.resolve() };
}

function summarize(table: EntryTable, deleted: number): PlanSummary {
  let changed = 0;
  let changedFileBytes = 0;
  for (let i = 0; i < table.count; i++) {
    if (table.states[i] !== STATE.changed) continue;
    changed++;
    if (table.types[i] === TYPE_CODES.file) changedFileBytes += table.sizes[i]!;
  }
  return { changed, unchanged: table.count - changed, deleted, changedFileBytes };
}

/**
 * Walks (or copies the database), and plans against the parent.
 *
 * @param options source, ids and parent
 * @returns the prepared snapshot
 * @throws {SourceError} when the source cannot be read as a whole, or the parent is invalid
 *
 * @example Planning and packing into memory
 * ```ts ignore
 * const prepared = await prepareSnapshot({ source, sourceId, snapshotId: writer.id, parent: null });
 * const packed = await prepared.pack((chunk) => writer.write(chunk), "storage");
 * for (const line of packed.lines()) send(line);
 * ```
 */
export async function prepareSnapshot(options: SourceOptions): Promise<PreparedSnapshot> {
  const mode = options.mode ?? "fs";
  const found = await findEntries(options);
  const parent = mode === "db" ? null : options.parentStream ?? streamOfManifest(options.parent);
  const { parentId, deleted, inParent, parentLineOf } = await planAgainst(found.table, parent);
  const table = found.table;
  return {
    table,
    plan: summarize(table, deleted.length),
    skipped: found.skipped,
    close: found.close,
    async pack(sink, channel = "none") {
      await options.beforePack?.();
      const names = await ownerNames();
      const packed = await packTable({
        root: found.root,
        table,
        snapshotId: options.snapshotId,
        sink,
        hashWorker: options.hashWorker,
        ownerNames: names,
      });
      const channelBytes: ChannelBytes = { storage: 0, network: 0 };
      if (channel !== "none") channelBytes[channel] = packed.archiveBytes;
      const head: ManifestHead = {
        format: MANIFEST_FORMAT,
        version: MANIFEST_VERSION,
        id: options.snapshotId,
        kind: mode,
        source: options.sourceId,
        parent: parentId,
        createdMs: options.nowMs ?? Date.now(),
        archiveBytes: packed.archiveBytes,
        channelBytes,
      };
      // A path of the parent that packing left out is gone from this snapshot too.
      for (let i = 0; i < table.count; i++) {
        if (table.states[i] === STATE.skipped && inParent(i)) deleted.push(table.path(i));
      }
      return packedSnapshot(head, table, deleted, {
        skipped: [...found.skipped, ...packed.skipped],
        files: packed.files,
        fileBytes: packed.fileBytes,
        names,
        parentLineOf,
      });
    },
  };
}

function packedSnapshot(
  head: ManifestHead,
  table: EntryTable,
  deleted: readonly string[],
  facts: {
    skipped: SkippedEntry[];
    files: number;
    fileBytes: number;
    names: Awaited<ReturnType<typeof ownerNames>>;
    parentLineOf: (index: number) => number;
  },
): PackedSnapshot {
  function* entries() {
    for (let i = 0; i < table.count; i++) {
      const entry = manifestEntryAt(table, i, head.id, facts.names);
      if (entry !== undefined) yield entry;
    }
  }
  return {
    head,
    *lines(runs = false) {
      yield JSON.stringify(head);
      yield* entryLines(table, head.id, facts.names, runs ? facts.parentLineOf : undefined);
      for (const path of deleted) yield JSON.stringify(path);
    },
    get manifest(): Manifest {
      return { ...head, entries: [...entries()], deleted: [...deleted] };
    },
    skipped: facts.skipped,
    files: facts.files,
    fileBytes: facts.fileBytes,
  };
}
