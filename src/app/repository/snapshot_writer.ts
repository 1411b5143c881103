/**
 * Writing one snapshot into a repository: takes the repository lock, accepts the archive bytes
 * as they arrive, and commits with the manifest. Commit protocol: archive synced; the manifest
 * written to `tmp/` and synced (it also tells the next writer that an archive without a manifest
 * is this writer's orphan); the archive renamed into `snapshots/`; the manifest renamed into
 * `snapshots/` (that rename is the commit point), then the directory synced and the lock
 * released. An abort, or any failure before the commit point, removes everything the writer
 * created.
 *
 * @module
 */

import { makeSnapshotId, type Manifest, parseManifest } from "../../core/backup/manifest.ts";
import type { ManifestHead } from "../../core/backup/manifest_stream.ts";
import { ManifestFileWriter } from "./_manifest_file.ts";
import { acquireLock, LOCK_WAIT_MS_DEFAULT } from "./_repo_lock.ts";
import { RepositoryError } from "../errors.ts";
import { openRepository, repoPaths, type Repository } from "./repository.ts";
import { MANIFEST_NOTE, removeStale, syncDir } from "./_repo_files.ts";
import { type RepoFile, repoFs } from "./repo_fs.ts";

/**
 * Written bytes after which a background flush starts, so the final sync is short. Small, so
 * the disk starts early and each flush (which holds up writes to the file while it runs) is
 * brief; measured 4-16 MiB alike, 64 MiB slower, none much slower (dirty-page throttling).
 */
const FLUSH_EVERY_BYTES = 16 << 20;
/** How long {@link removeLeftovers} waits for the flock of a writer that is going away. */
const LEFTOVERS_LOCK_WAIT_MS = 2_000;

/** Accepts one snapshot's archive bytes; then commit or abort. */
export interface SnapshotWriter {
  /** The id of the snapshot being written. */
  readonly id: string;
  /** The repository it is written into. */
  readonly repo: Repository;
  /** Archive bytes accepted so far. */
  readonly bytesWritten: number;
  /** Appends archive bytes. */
  write(chunk: Uint8Array): Promise<void>;
  /** Validates the manifest against what was written and makes the snapshot visible. */
  commit(manifest: unknown): Promise<Manifest>;
  /**
   * Where a manifest written a line at a time goes before the commit (`tmp/ID.manifest.json.partial`,
   * a {@link ManifestFileWriter}'s file): the server writes it while the entries arrive.
   */
  readonly manifestTempPath: string;
  /**
   * Makes the snapshot visible with the manifest already written, checked and synced at
   * {@link manifestTempPath} (its head is `head`): the same checks and steps as `commit`.
   */
  commitWritten(head: ManifestHead): Promise<ManifestHead>;
  /** Drops everything written; the repository is as before. Idempotent. */
  abort(): Promise<void>;
}

/**
 * The steps of the commit protocol, in order, as a drill hook sees them: `locked` (the lock is
 * held), `cleaned` (leftovers removed, temporary archive open), `archive-bytes` (after each
 * write), `manifest-written` (archive synced, manifest synced in `tmp/`), `archive-placed`
 * (archive renamed into `snapshots/`), `committed` (manifest renamed in: the commit point),
 * `released`.
 */
export type WriterStep =
  | "locked"
  | "cleaned"
  | "archive-bytes"
  | "manifest-written"
  | "archive-placed"
  | "committed"
  | "released";

/** Options of {@link beginSnapshot}. */
export interface BeginOptions {
  /** Time of the snapshot id. */
  readonly nowMs?: number;
  /** How long to wait for another writer's lock. */
  readonly lockWaitMs?: number;
  /** Drill hook: awaited at every step of the commit protocol (crash tests stop a writer here). */
  readonly onStep?: (step: WriterStep) => Promise<void> | void;
  /** Stops waiting for another writer's lock. */
  readonly signal?: AbortSignal;
}

function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Removes what a writer that was stopped without aborting (a terminated Worker host) left in a
 * repository: takes the lock (a terminated holder's flock goes away with it), removes leftovers
 * of interrupted writers, and releases the lock, so the repository is as it was before that
 * writer began. A live writer that keeps the lock keeps its files; a missing repository is left
 * alone.
 *
 * @param repoPath the repository directory
 * @returns true when it cleaned, false when there was no repository or a live writer holds it
 */
export async function removeLeftovers(repoPath: string): Promise<boolean> {
  const repo = await openRepository(repoPath).catch(() => undefined);
  if (repo === undefined) return false;
  let release: () => Promise<void>;
  try {
    release = await acquireLock(repoPaths.lock(repo), LEFTOVERS_LOCK_WAIT_MS);
  } catch (error) {
    if (error instanceof RepositoryError && error.code === "locked") return false;
    throw error;
  }
  try {
    await removeStale(repo);
  } finally {
    await release();
  }
  return true;
}

/**
 * Starts a snapshot: takes the lock (waiting up to `lockWaitMs`), cleans leftovers of earlier
 * interrupted writers, and opens the temporary archive.
 *
 * @param repo an opened repository
 * @param options id time and lock wait
 * @returns the writer
 * @throws {RepositoryError} `locked` when another backup keeps the lock
 *
 * @example Aborting leaves nothing behind
 * ```ts
 * import assert from "node:assert/strict";
 * import { initRepository, listSnapshotIds } from "./repository.ts";
 * import { beginSnapshot } from "./snapshot_writer.ts";
 * const dir = await Deno.makeTempDir();
 * const repo = await initRepository(dir);
 * const writer = await beginSnapshot(repo);
 * await writer.write(new Uint8Array(512));
 * await writer.abort();
 * assert.deepEqual(await listSnapshotIds(repo), []);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function beginSnapshot(
  repo: Repository,
  options: BeginOptions = {},
): Promise<SnapshotWriter> {
  const step = options.onStep ?? (() => {});
  const release = await acquireLock(
    repoPaths.lock(repo),
    options.lockWaitMs ?? LOCK_WAIT_MS_DEFAULT,
    options.signal,
  );
  try {
    await step("locked");
    await removeStale(repo);
    const id = makeSnapshotId(options.nowMs ?? Date.now(), randomHex());
    const tempPath = `${repoPaths.tmp(repo)}/${id}.tar.partial`;
    const file = await repoFs().create(tempPath);
    await step("cleaned");
    return new Writer(repo, id, tempPath, file, release, step);
  } catch (error) {
    await release();
    throw error;
  }
}

class Writer implements SnapshotWriter {
  bytesWritten = 0;
  #state: "open" | "committing" | "done" = "open";
  #flushedAt = 0;
  #flush: Promise<void> | null = null;
  #syncHandle: Deno.FsFile | undefined;
  #flushError: unknown = undefined;

  constructor(
    readonly repo: Repository,
    readonly id: string,
    readonly tempPath: string,
    readonly file: RepoFile,
    readonly release: () => Promise<void>,
    readonly step: (step: WriterStep) => Promise<void> | void,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    this.#expectOpen();
    if (this.#flushError !== undefined) throw this.#flushError;
    for (let offset = 0; offset < chunk.byteLength;) {
      offset += await this.file.write(chunk.subarray(offset));
    }
    this.bytesWritten += chunk.byteLength;
    await this.step("archive-bytes");
    if (this.bytesWritten - this.#flushedAt >= FLUSH_EVERY_BYTES && this.#flush === null) {
      this.#flushedAt = this.bytesWritten;
      this.#flush = this.#backgroundSync().then(
        () => void (this.#flush = null),
        (error) => void (this.#flushError = error, this.#flush = null),
      );
    }
  }

  /**
   * fdatasync through a second handle of the same file: Deno runs the operations of one handle
   * one at a time, so a sync on the writing handle held up every write behind it (about 2 s of
   * a 600 MB backup of small files); the kernel syncs the file's data whichever handle asks.
   */
  async #backgroundSync(): Promise<void> {
    this.#syncHandle ??= await Deno.open(this.tempPath, { read: true });
    await this.#syncHandle.syncData();
  }

  get manifestTempPath(): string {
    return `${repoPaths.tmp(this.repo)}/${this.id}${MANIFEST_NOTE.commit}`;
  }

  async commit(value: unknown): Promise<Manifest> {
    this.#expectOpen();
    const parsed = parseManifest(value);
    if (!parsed.ok) {
      this.#state = "committing";
      await this.#failCommit(false);
      throw new RepositoryError(
        "bad-commit",
        `snapshot ${this.id}: invalid manifest: ${parsed.message}`,
      );
    }
    const manifest = parsed.manifest;
    await this.#commitSteps(manifest, () => this.#writeManifest(manifest));
    return manifest;
  }

  async commitWritten(head: ManifestHead): Promise<ManifestHead> {
    this.#expectOpen();
    await this.#commitSteps(head, () => Promise.resolve());
    return head;
  }

  /** Checks, places the archive, places the manifest (`write` puts it in tmp/ first). */
  async #commitSteps(head: ManifestHead, write: () => Promise<void>): Promise<void> {
    this.#state = "committing";
    const archive = repoPaths.archive(this.repo, this.id);
    let archivePlaced = false;
    try {
      await this.#checked(head);
      await this.#flush;
      if (this.#flushError !== undefined) throw this.#flushError;
      await this.file.sync();
      this.#closeFiles();
      // The manifest goes to tmp/ first (the commit note an interrupted writer's successor
      // reads), then the archive is placed, then the manifest: the commit point.
      await write();
      await syncDir(repoPaths.tmp(this.repo));
      await this.step("manifest-written");
      await repoFs().rename(this.tempPath, archive);
      archivePlaced = true;
      await this.step("archive-placed");
      await repoFs().rename(this.manifestTempPath, repoPaths.manifest(this.repo, this.id));
      this.#state = "done";
    } catch (error) {
      await this.#failCommit(archivePlaced);
      throw error;
    }
    // Past the commit point: nothing below may undo the snapshot. A failed sync of the
    // directory leaves a whole snapshot visible (the renames are atomic); removing its archive
    // now would leave a manifest without one, so the failure is not the snapshot's.
    await syncDir(repoPaths.snapshots(this.repo)).catch(() => {});
    await this.step("committed");
    await this.release();
    await this.step("released");
  }

  async #failCommit(archivePlaced: boolean): Promise<void> {
    if (archivePlaced) await repoFs().remove(repoPaths.archive(this.repo, this.id)).catch(() => {});
    await repoFs().remove(this.manifestTempPath).catch(() => {});
    this.#state = "open";
    await this.abort();
  }

  async abort(): Promise<void> {
    if (this.#state === "done") return;
    this.#state = "done";
    await this.#flush;
    this.#closeFiles();
    await repoFs().remove(this.tempPath).catch(() => {});
    await this.release();
  }

  #closeFiles(): void {
    for (const file of [this.file, this.#syncHandle]) {
      try {
        file?.close();
      } catch {
        // already closed by a failed commit
      }
    }
    this.#syncHandle = undefined;
  }

  async #checked(manifest: ManifestHead): Promise<void> {
    const what = `snapshot ${this.id}`;
    if (manifest.id !== this.id) {
      throw new RepositoryError("bad-commit", `${what}: manifest is for ${manifest.id}`);
    }
    if (manifest.archiveBytes !== this.bytesWritten) {
      throw new RepositoryError(
        "bad-commit",
        `${what}: manifest says ${manifest.archiveBytes} archive bytes, ${this.bytesWritten} arrived`,
      );
    }
    if (manifest.parent !== null) {
      const exists = await Deno.stat(repoPaths.manifest(this.repo, manifest.parent)).then(
        () => true,
        () => false,
      );
      if (!exists) {
        throw new RepositoryError("bad-commit", `${what}: parent ${manifest.parent} not found`);
      }
    }
  }

  /** Writes a manifest given whole into tmp/, in the line layout, synced. */
  async #writeManifest(manifest: Manifest): Promise<void> {
    const { entries, deleted, channelBytes, ...head } = manifest;
    const file = await ManifestFileWriter.create(this.manifestTempPath, head);
    try {
      for (const entry of entries) await file.entry(JSON.stringify(entry));
      for (const path of deleted) await file.deleted(path);
      await file.finish(channelBytes);
    } catch (error) {
      await file.abort();
      throw error;
    }
  }

  #expectOpen(): void {
    if (this.#state !== "open") {
      throw new RepositoryError("closed", `snapshot ${this.id} is already committed or aborted`);
    }
  }
}
