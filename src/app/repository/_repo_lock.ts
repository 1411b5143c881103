/**
 * The repository's writer lock: an exclusive `flock` on `REPO/lock`, held by the one writer for
 * as long as it writes. The kernel drops a flock when its holder dies (crash, `kill -9`, OOM, a
 * terminated Worker closes its files too), so a dead writer never locks the repository for good:
 * the next writer finds the file unlocked and takes it over. No `/proc` look-up is needed, which
 * the tasks' permissions refuse anyway. A second live writer polls, bounded by a deadline, and
 * then fails with `locked` naming the file and the holder written in it.
 *
 * The holder records `{pid, hostname, createdMs}` in the file for people and error messages
 * only; liveness is the flock alone. Releasing removes the file while still holding the flock,
 * then closes it; a writer that locked a file some releaser had just removed sees that the path
 * no longer names its file and tries again.
 *
 * @module
 */

import { repoFs } from "./repo_fs.ts";
import { RepositoryError } from "../errors.ts";

/** Default time a second writer waits for the lock. */
export const LOCK_WAIT_MS_DEFAULT = 30_000;
/** Pause between two attempts to take the lock. */
const LOCK_POLL_MS = 50;
/** Largest holder record read from a lock file, bytes. */
const HOLDER_BYTES_MAX = 4096;

/** Who holds the lock, as the holder wrote it. */
export interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  readonly createdMs: number;
}

function hostnameOrUnknown(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown host"; // --allow-sys not granted: the record is informative only
  }
}

async function writeHolder(file: Deno.FsFile): Promise<void> {
  const holder: LockHolder = {
    pid: Deno.pid,
    hostname: hostnameOrUnknown(),
    createdMs: Date.now(),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
  await file.truncate(0);
  await file.seek(0, Deno.SeekMode.Start);
  for (let offset = 0; offset < bytes.byteLength;) {
    offset += await file.write(bytes.subarray(offset));
  }
}

/** The holder recorded in the lock file, or undefined while it is being written or unreadable. */
export async function readLockHolder(path: string): Promise<LockHolder | undefined> {
  try {
    const file = await Deno.open(path, { read: true });
    try {
      const buffer = new Uint8Array(HOLDER_BYTES_MAX);
      const read = await file.read(buffer);
      const value = JSON.parse(new TextDecoder().decode(buffer.subarray(0, read ?? 0)));
      if (typeof value?.pid !== "number" || typeof value?.hostname !== "string") return undefined;
      return { pid: value.pid, hostname: value.hostname, createdMs: Number(value.createdMs) };
    } finally {
      file.close();
    }
  } catch {
    return undefined;
  }
}

async function sameFile(file: Deno.FsFile, path: string): Promise<boolean> {
  const named = await Deno.lstat(path).catch(() => null);
  if (named === null) return false;
  const opened = await file.stat();
  return named.ino === opened.ino && named.dev === opened.dev;
}

/** One attempt: the open, locked file when this writer now holds the lock, else undefined. */
async function tryTake(path: string): Promise<Deno.FsFile | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o644 });
  } catch (error) {
    throw new RepositoryError("corrupt", `cannot open lock file ${path}: ${error}`, {
      cause: error,
    });
  }
  try {
    // A file whose holder died is unlocked: taking it over is the same as taking a fresh one.
    if (await file.tryLock(true) && await sameFile(file, path)) {
      await writeHolder(file);
      return file;
    }
  } catch (error) {
    file.close();
    throw new RepositoryError("corrupt", `cannot lock ${path}: ${error}`, { cause: error });
  }
  file.close(); // held by a live writer, or removed by a releasing one: try again later
  return undefined;
}

function describeHolder(holder: LockHolder | undefined): string {
  if (holder === undefined) return "a writer that has not recorded itself yet";
  const since = Number.isFinite(holder.createdMs)
    ? ` since ${new Date(holder.createdMs).toISOString()}`
    : "";
  return `pid ${holder.pid} on ${holder.hostname}${since}`;
}

/**
 * Takes the lock at `path`, waiting up to `waitMs` for a live writer to finish.
 *
 * @param path the lock file
 * @param waitMs how long to wait for another writer
 * @param signal stops the wait (its reason is thrown)
 * @returns a function that releases the lock (idempotent)
 * @throws {RepositoryError} `locked` naming the file and its holder when the wait runs out
 *
 * @example A second writer waits, then is refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { acquireLock } from "./_repo_lock.ts";
 * const dir = await Deno.makeTempDir();
 * const release = await acquireLock(`${dir}/lock`, 0);
 * await assert.rejects(acquireLock(`${dir}/lock`, 100), { code: "locked" });
 * await release();
 * await (await acquireLock(`${dir}/lock`, 0))();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function acquireLock(
  path: string,
  waitMs: number,
  signal?: AbortSignal,
): Promise<() => Promise<void>> {
  const deadline = Date.now() + waitMs;
  const attemptsMax = Math.ceil(waitMs / LOCK_POLL_MS) + 1;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    const file = await tryTake(path);
    if (file !== undefined) {
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        // Remove while still holding the flock, so nobody locks a file that is going away.
        await repoFs().remove(path).catch(() => {});
        file.close();
      };
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    signal?.throwIfAborted();
  }
  const holder = await readLockHolder(path);
  throw new RepositoryError(
    "locked",
    `repository is locked by another backup: ${
      describeHolder(holder)
    } holds ${path}; waited ${waitMs} ms`,
  );
}
