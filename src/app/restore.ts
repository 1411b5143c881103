/**
 * Restores a snapshot (applying its incremental chain) into a target directory: directories
 * first, then file bytes archive by archive (every SHA-256 checked while writing), then
 * symlinks, then directory modes and mtimes deepest first. Only paths from the validated
 * manifest are written, never through a symlink, never outside the target.
 *
 * @module
 */

import { CHAIN_LENGTH_MAX, planRestore, type RestorePlan } from "../core/backup/chain.ts";
import type { FileEntry, Manifest, ManifestEntry } from "../core/backup/manifest.ts";
import { parentPath } from "../core/backup/path_rules.ts";
import { checkedBody, readArchiveFiles } from "./_archive_read.ts";
import { RestoreError } from "./errors.ts";
import {
  openRepository,
  readManifest,
  repoPaths,
  type Repository,
  resolveSnapshot,
} from "./repository.ts";

/** Options of {@link restoreSnapshot}. */
export interface RestoreOptions {
  /** Repository directory (or an opened repository). */
  readonly repo: string | Repository;
  /** Snapshot id, or `"latest"`. */
  readonly snapshot: string;
  /** Directory to restore into; created if missing. */
  readonly target: string;
  /** A file or directory of the snapshot to restore alone (keeps its path below the target). */
  readonly path?: string;
  /** Allow a non-empty target (existing entries in the way are replaced). */
  readonly overwrite?: boolean;
}

/** What a restore did. */
export interface RestoreSummary {
  /** The snapshot restored. */
  readonly snapshot: string;
  /** Regular files written. */
  readonly files: number;
  /** Directories made. */
  readonly dirs: number;
  /** Symlinks made. */
  readonly symlinks: number;
  /** File bytes written. */
  readonly bytes: number;
  /** How long the restore took. */
  readonly seconds: number;
}

/** Loads `manifest` and its ancestors, by id. */
async function loadChain(repo: Repository, manifest: Manifest): Promise<Map<string, Manifest>> {
  const known = new Map([[manifest.id, manifest]]);
  let parent = manifest.parent;
  for (let depth = 0; parent !== null && depth < CHAIN_LENGTH_MAX && !known.has(parent); depth++) {
    const next = await readManifest(repo, parent);
    known.set(next.id, next);
    parent = next.parent;
  }
  return known;
}

async function prepareTarget(
  target: string,
  overwrite: boolean,
): Promise<{ root: string; fresh: boolean }> {
  await Deno.mkdir(target, { recursive: true });
  const info = await Deno.lstat(target);
  if (!info.isDirectory) {
    throw new RestoreError("unsafe-path", `target ${target} is not a directory`);
  }
  let fresh = true;
  for await (const _ of Deno.readDir(target)) {
    fresh = false;
    break;
  }
  if (!fresh && !overwrite) {
    throw new RestoreError(
      "target-not-empty",
      `target ${target} is not empty (use overwrite to restore into it)`,
    );
  }
  return { root: await Deno.realPath(target), fresh };
}

/** File bytes read from the archive and not yet written: reading waits above this. */
const WRITE_BACKLOG_BYTES = 16 << 20;
/** Files being finished (written, timed, closed, moded) behind the reader at most. */
const FILES_IN_FLIGHT_MAX = 16;

/**
 * Writes into `root` only: checks every parent, never follows a symlink already there. A file's
 * bytes are written behind the archive reader (bounded by {@link WRITE_BACKLOG_BYTES} and
 * {@link FILES_IN_FLIGHT_MAX}), so reading and hashing the next entry overlap the writes;
 * {@link TargetWriter.drain} waits for them all and reports the first failure.
 */
class TargetWriter {
  readonly #dirs = new Set<string>([""]);
  readonly #inFlight = new Set<Promise<void>>();
  #backlogBytes = 0;
  #backlogWaiter: (() => void) | undefined;
  #failure: unknown = undefined;
  constructor(readonly root: string, readonly fresh: boolean) {}

  full(path: string): string {
    return `${this.root}/${path}`;
  }

  /** Makes room for a new entry at `path`: its parent must be a directory we verified. */
  async clear(path: string, keepDir: boolean): Promise<"absent" | "dir"> {
    if (!this.#dirs.has(parentPath(path))) {
      throw new RestoreError(
        "unsafe-path",
        `entry ${JSON.stringify(path)}: its parent is not a restored directory`,
      );
    }
    if (this.fresh) return "absent";
    const info = await Deno.lstat(this.full(path)).catch(() => null);
    if (info === null) return "absent";
    if (keepDir && info.isDirectory) return "dir";
    await Deno.remove(this.full(path), { recursive: true });
    return "absent";
  }

  async dir(entry: ManifestEntry): Promise<void> {
    if ((await this.clear(entry.path, true)) === "absent") {
      await Deno.mkdir(this.full(entry.path), { mode: 0o700 });
    }
    this.#dirs.add(entry.path);
  }

  async file(entry: FileEntry, snapshot: string, body: AsyncIterable<Uint8Array>): Promise<void> {
    this.#throwIfFailed();
    await this.clear(entry.path, false);
    const path = this.full(entry.path);
    const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    // The file's writes, in order, behind the reader; each chunk leaves the backlog once written.
    let written: Promise<void> = Promise.resolve();
    const discard = async () => {
      await written.catch(() => {});
      file.close();
      await Deno.remove(path).catch(() => {});
    };
    try {
      await checkedBody(entry, snapshot, body, async (chunk) => {
        await this.#roomFor(chunk.byteLength);
        this.#backlogBytes += chunk.byteLength;
        written = written.then(() => writeAll(file, chunk)).finally(() => {
          this.#backlogBytes -= chunk.byteLength;
          this.#wakeReader();
        });
        written.catch(() => {}); // awaited by the finishing step or by discard()
      });
    } catch (error) {
      await discard();
      throw error;
    }
    // Modes and mtimes are set once the file is complete, still behind the reader.
    const finishing = written.then(async () => {
      await file.utime(entry.mtimeMs / 1000, entry.mtimeMs / 1000);
      file.close();
      await Deno.chmod(path, entry.mode);
    }).catch(async (error) => {
      this.#failure ??= error;
      await discard().catch(() => {});
    });
    this.#inFlight.add(finishing);
    finishing.finally(() => this.#inFlight.delete(finishing));
    if (this.#inFlight.size >= FILES_IN_FLIGHT_MAX) await Promise.race(this.#inFlight);
  }

  /** Waits for every file still being written; throws the first write failure. */
  async drain(): Promise<void> {
    // Bounded: each turn waits for the files present; none are added meanwhile.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #roomFor(bytes: number): Promise<void> {
    // Bounded: each wake-up follows a written chunk leaving the backlog.
    while (this.#backlogBytes > 0 && this.#backlogBytes + bytes > WRITE_BACKLOG_BYTES) {
      this.#throwIfFailed();
      await new Promise<void>((resolve) => (this.#backlogWaiter = resolve));
    }
  }

  #wakeReader(): void {
    const waiter = this.#backlogWaiter;
    this.#backlogWaiter = undefined;
    waiter?.();
  }

  async symlink(entry: ManifestEntry & { type: "symlink" }): Promise<void> {
    await this.clear(entry.path, false);
    await Deno.symlink(entry.target, this.full(entry.path));
  }

  async finishDir(entry: ManifestEntry): Promise<void> {
    await Deno.chmod(this.full(entry.path), entry.mode);
    await Deno.utime(this.full(entry.path), entry.mtimeMs / 1000, entry.mtimeMs / 1000);
  }
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.byteLength;) {
    offset += await file.write(chunk.subarray(offset));
  }
}

async function writeFiles(
  repo: Repository,
  plan: RestorePlan,
  writer: TargetWriter,
): Promise<number> {
  let bytes = 0;
  for (const archive of plan.archives) {
    const path = repoPaths.archive(repo, archive.snapshot);
    const seen = await readArchiveFiles(
      path,
      archive.snapshot,
      archive.files,
      async (entry, body) => {
        await writer.file(entry, archive.snapshot, body);
        bytes += entry.sizeBytes;
      },
    ).finally(() => writer.drain().catch(() => {}));
    await writer.drain();
    for (const wanted of archive.files.keys()) {
      if (!seen.has(wanted)) {
        throw new RestoreError(
          "missing-data",
          `file ${
            JSON.stringify(wanted)
          } is missing from the archive of snapshot ${archive.snapshot}`,
        );
      }
    }
  }
  return bytes;
}

/**
 * Restores a snapshot into `target`.
 *
 * @param options repository, snapshot, target, optional subpath and overwrite
 * @returns counts, bytes and seconds
 * @throws {RestoreError} on an unsafe path, a non-empty target, a hash or size mismatch
 *   (naming the file) or a damaged archive; {@link RepositoryError} for repository problems
 *
 * @example Restoring the latest snapshot
 * ```ts ignore
 * import { restoreSnapshot } from "./restore.ts";
 * const summary = await restoreSnapshot({ repo: "./.lanfree/repo", snapshot: "latest", target: "/tmp/out" });
 * console.log(`${summary.files} files restored`);
 * ```
 */
export async function restoreSnapshot(options: RestoreOptions): Promise<RestoreSummary> {
  const startedMs = performance.now();
  const repo = typeof options.repo === "string" ? await openRepository(options.repo) : options.repo;
  const manifest = await resolveSnapshot(repo, options.snapshot);
  const planned = planRestore(manifest, await loadChain(repo, manifest), options.path);
  if (!planned.ok) throw new RestoreError("bad-plan", planned.message);
  const { root, fresh } = await prepareTarget(options.target, options.overwrite ?? false);
  const writer = new TargetWriter(root, fresh);
  const entries = planned.plan.entries;
  const dirs = entries.filter((e) => e.type === "dir");
  for (const dir of dirs) await writer.dir(dir);
  const bytes = await writeFiles(repo, planned.plan, writer);
  let symlinks = 0;
  for (const entry of entries) {
    if (entry.type !== "symlink") continue;
    await writer.symlink(entry);
    symlinks++;
  }
  for (const dir of [...dirs].reverse()) await writer.finishDir(dir);
  return {
    snapshot: manifest.id,
    files: entries.filter((e) => e.type === "file").length,
    dirs: dirs.length,
    symlinks,
    bytes,
    seconds: (performance.now() - startedMs) / 1000,
  };
}
