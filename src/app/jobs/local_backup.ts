/**
 * A whole backup in one process: walk, plan against the latest manifest of the same source,
 * pack, write into the repository, commit. It is the two halves of a networked backup joined
 * by a function call, so the split is visible here:
 *
 * - server: `initRepository` → `beginSnapshot` (id, lock) → `chooseParent` (the parent, a
 *   plain JSON value sent to the client, or why the backup is full) … `writer.write(chunk)` per chunk … `writer.commit`;
 * - client: `sourceIdentity` (sent to the server) → `prepareSnapshot` (walk + plan) →
 *   `prepared.pack(sink)` (chunks to the channel) → the manifest sent back.
 *
 * @module
 */

import { chooseParent, initRepository, streamManifest } from "../repository/repository.ts";
import { beginSnapshot, type WriterStep } from "../repository/snapshot_writer.ts";
import {
  type ArchiveChannel,
  checkSource,
  prepareSnapshot,
  sourceIdentity,
} from "../agent/snapshot_source.ts";
import type { ChunkSink } from "../agent/tar_pack.ts";
import type { SkippedEntry } from "../agent/tree_walk.ts";
import { type ExcludedPath, repositoryExclusion } from "../agent/source_exclusions.ts";
import {
  commitReceived,
  type CommittedManifest,
  receiveManifestLines,
} from "../repository/_manifest_commit.ts";
import { pulled } from "../repository/_manifest_file.ts";
import type { ManifestEntry } from "../../core/backup/manifest.ts";

/** Options of {@link runLocalBackup}. */
export interface LocalBackupOptions {
  /** Directory (fs mode) to back up; in db mode the database file unless `db` is given. */
  readonly source: string;
  /** Repository directory; created if missing or empty. */
  readonly repo: string;
  /** Only what changed since the latest snapshot of the same source (fs mode). */
  readonly incremental?: boolean;
  /** `fs`: a directory tree (default); `db`: one SQLite database. */
  readonly mode?: "fs" | "db";
  /** The SQLite database file (db mode). */
  readonly db?: string;
  /** Also receives every archive chunk, after the repository accepted it (progress, tee). */
  readonly sink?: ChunkSink;
  /** Channel recorded in the manifest's byte counters. */
  readonly channel?: ArchiveChannel;
  /** How long to wait for another backup's lock. */
  readonly lockWaitMs?: number;
  /** Test hook: runs between the walk (scan) and packing. */
  readonly beforePack?: () => Promise<void>;
  /** Drill hook: awaited at every step of the commit protocol (see `WriterStep`). */
  readonly onWriterStep?: (step: WriterStep) => Promise<void> | void;
}

/** What a backup did. */
export interface BackupSummary {
  /** The new snapshot's id. */
  readonly snapshot: string;
  /** The snapshot it is incremental to, or null. */
  readonly parent: string | null;
  /** Why an incremental backup that was asked for is full (see `chooseParent`), else null. */
  readonly fullReason: string | null;
  /** The source as recorded in the manifest. */
  readonly source: string;
  /** Files archived in this snapshot (new or changed). */
  readonly files: number;
  /** Files in the snapshot, including unchanged ones kept from earlier snapshots. */
  readonly filesTotal: number;
  /** File bytes archived in this snapshot. */
  readonly bytes: number;
  /** Size of this snapshot's tar archive. */
  readonly archiveBytes: number;
  /** Paths of the parent that are gone. */
  readonly deleted: number;
  /** Entries left out. */
  readonly skipped: number;
  /** Each entry left out, with the reason. */
  readonly skippedEntries: SkippedEntry[];
  /** Paths of the source left out on purpose (the repository, when it lies inside). */
  readonly excluded: readonly ExcludedPath[];
  /** How long the backup took. */
  readonly seconds: number;
}

function summarize(
  manifest: CommittedManifest,
  packed: { files: number; fileBytes: number; skipped: SkippedEntry[] },
  facts: { fullReason: string | null; excluded: readonly ExcludedPath[] },
  seconds: number,
): BackupSummary {
  return {
    snapshot: manifest.id,
    parent: manifest.parent,
    fullReason: facts.fullReason,
    source: manifest.source,
    files: packed.files,
    filesTotal: manifest.fileCount,
    bytes: packed.fileBytes,
    archiveBytes: manifest.archiveBytes,
    deleted: manifest.deletedCount,
    skipped: packed.skipped.length,
    skippedEntries: packed.skipped,
    excluded: facts.excluded,
    seconds,
  };
}

/**
 * Runs a backup in this process.
 *
 * @param options source, repository, mode and incremental flag
 * @returns the summary (snapshot id, counts, bytes, skipped entries with reasons, seconds)
 * @throws {SourceError} when the source cannot be read; {@link RepositoryError} for the repository.
 *   On any failure the repository is left as it was.
 *
 * @example A full backup then an incremental one
 * ```ts
 * import assert from "node:assert/strict";
 * import { runLocalBackup } from "./local_backup.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/src`);
 * await Deno.writeTextFile(`${dir}/src/a.txt`, "hello");
 * const full = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * const again = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo`, incremental: true });
 * assert.equal(full.files, 1);
 * assert.equal(again.files, 0);
 * assert.equal(again.parent, full.snapshot);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runLocalBackup(options: LocalBackupOptions): Promise<BackupSummary> {
  const startedMs = performance.now();
  const mode = options.mode ?? "fs";
  const source = mode === "db" ? options.db ?? options.source : options.source;
  await checkSource(source, mode);
  const sourceId = await sourceIdentity(source);
  const excluded = mode === "fs" ? await repositoryExclusion(source, options.repo) : [];
  const repo = await initRepository(options.repo);
  const writer = await beginSnapshot(repo, {
    lockWaitMs: options.lockWaitMs,
    onStep: options.onWriterStep,
  });
  let prepared: Awaited<ReturnType<typeof prepareSnapshot>> | undefined;
  try {
    const { parent, fullReason } = await chooseParent(
      repo,
      sourceId,
      mode,
      options.incremental ?? false,
    );
    const entries = parent === null
      ? undefined
      : pulled<ManifestEntry>((push) => streamManifest(repo, parent.id, { entry: push }));
    prepared = await prepareSnapshot({
      mode,
      source,
      sourceId,
      snapshotId: writer.id,
      parent: null,
      parentStream: parent === null || entries === undefined
        ? undefined
        : { head: parent, entries },
      beforePack: options.beforePack,
      exclude: excluded.map((e) => e.path),
    });
    const extra = options.sink;
    const packed = await prepared.pack(async (chunk) => {
      await writer.write(chunk);
      if (extra !== undefined) await extra(chunk);
    }, options.channel ?? "none");
    const received = await receiveManifestLines(writer, packed.lines());
    const manifest = await commitReceived(writer, received, packed.head.channelBytes);
    const seconds = (performance.now() - startedMs) / 1000;
    return summarize(manifest, packed, { fullReason, excluded }, seconds);
  } catch (error) {
    await writer.abort();
    throw error;
  } finally {
    await prepared?.close();
  }
}
