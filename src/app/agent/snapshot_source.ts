/**
 * The client half of a backup: find what to archive (walk or database copy), plan against the
 * parent manifest the server sent, pack into any chunk sink, and build the manifest to send
 * back. Nothing here touches the repository, so the byte stream can cross a channel.
 *
 * @module
 */

import { type ChannelBytes, type Manifest, parseManifest } from "../../core/backup/manifest.ts";
import {
  buildManifest,
  planSnapshot,
  type SnapshotPlan,
  type SourceEntry,
} from "../../core/backup/plan.ts";
import { copyDatabase, openDatabaseSource } from "./db_snapshot.ts";
import { SourceError } from "../errors.ts";
import { type ChunkSink, packEntries } from "./tar_pack.ts";
import { type SkippedEntry, type WalkResult, walkTree } from "./tree_walk.ts";
import { ownerNames } from "../repository/_owners.ts";

/** Which channel carried the archive, for the manifest's counters. */
export type ArchiveChannel = "storage" | "network" | "none";

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
  /** The parent manifest as plain JSON from the server, or null for a full snapshot. */
  readonly parent: unknown;
  /** Creation time written into the manifest. */
  readonly nowMs?: number;
  /** A port to a hash worker the caller started (see `PackOptions.hashWorker`). */
  readonly hashWorker?: () => Promise<MessagePort>;
  /** A walk of `source` the caller started earlier (fs mode), instead of walking here. */
  readonly walked?: Promise<WalkResult>;
  /** Test hook: runs after the walk and the plan, before the first file is opened for packing. */
  readonly beforePack?: () => Promise<void>;
}

/** A planned snapshot, ready to pack. */
export interface PreparedSnapshot {
  readonly plan: SnapshotPlan;
  /** Entries the walk left out, with reasons (packing may add more). */
  readonly skipped: SkippedEntry[];
  /** Packs the changed entries into `sink` and returns the manifest to commit. */
  pack(sink: ChunkSink, channel?: ArchiveChannel): Promise<PackedSnapshot>;
  /** Removes temporary files (the database copy). Idempotent. */
  close(): Promise<void>;
}

/** The result of packing. */
export interface PackedSnapshot {
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

function parentManifest(value: unknown): Manifest | null {
  if (value === null || value === undefined) return null;
  const parsed = parseManifest(value);
  if (!parsed.ok) {
    throw new SourceError("unreadable", `parent manifest is invalid: ${parsed.message}`);
  }
  return parsed.manifest;
}

async function findEntries(options: SourceOptions) {
  if (options.mode === "db") {
    const copy = await copyDatabase(options.source, options.nowMs);
    return {
      root: copy.root,
      entries: [copy.entry] as SourceEntry[],
      skipped: [],
      close: copy.remove,
    };
  }
  const walked = await (options.walked ?? walkTree(options.source));
  return { root: options.source, ...walked, close: () => Promise.resolve() };
}

/**
 * Walks (or copies the database), and plans against the parent.
 *
 * @param options source, ids and parent
 * @returns the prepared snapshot
 * @throws {SourceError} when the source cannot be read as a whole
 *
 * @example Planning and packing into memory
 * ```ts ignore
 * const prepared = await prepareSnapshot({ source, sourceId, snapshotId: writer.id, parent: null });
 * const { manifest } = await prepared.pack((chunk) => writer.write(chunk), "storage");
 * await writer.commit(manifest);
 * ```
 */
export async function prepareSnapshot(options: SourceOptions): Promise<PreparedSnapshot> {
  const mode = options.mode ?? "fs";
  const parent = mode === "db" ? null : parentManifest(options.parent);
  const found = await findEntries(options);
  const plan = planSnapshot(found.entries, parent);
  return {
    plan,
    skipped: found.skipped,
    close: found.close,
    async pack(sink, channel = "none") {
      await options.beforePack?.();
      const names = await ownerNames();
      const packed = await packEntries({
        root: found.root,
        entries: plan.changed,
        sink,
        hashWorker: options.hashWorker,
        ownerNames: names,
      });
      const channelBytes: ChannelBytes = { storage: 0, network: 0 };
      if (channel !== "none") channelBytes[channel] = packed.archiveBytes;
      const manifest = buildManifest(plan, {
        id: options.snapshotId,
        kind: mode,
        source: options.sourceId,
        parent,
        createdMs: options.nowMs ?? Date.now(),
        archiveBytes: packed.archiveBytes,
        channelBytes,
        packed: packed.packed,
        ownerNames: names,
      });
      const fileBytes = [...packed.packed.values()].reduce((sum, f) => sum + f.sizeBytes, 0);
      return {
        manifest,
        skipped: [...found.skipped, ...packed.skipped],
        files: packed.packed.size,
        fileBytes,
      };
    },
  };
}
