/**
 * The repository's writer lock: a file created with create-new semantics. Whoever creates it
 * owns the repository for writing until it removes it. A second writer polls, bounded by a
 * deadline; a lock left by a dead process on this host is taken over.
 *
 * @module
 */

import { RepositoryError } from "./errors.ts";

/** Default time a second writer waits for the lock. */
export const LOCK_WAIT_MS_DEFAULT = 30_000;
/** Pause between two attempts to take the lock. */
const LOCK_POLL_MS = 50;

interface LockOwner {
  readonly pid: number;
  readonly hostname: string;
  readonly createdMs: number;
}

function currentOwner(): LockOwner {
  return { pid: Deno.pid, hostname: Deno.hostname(), createdMs: Date.now() };
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    await Deno.writeTextFile(path, JSON.stringify(currentOwner()), { createNew: true });
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    throw new RepositoryError("corrupt", `cannot create lock file ${path}: ${error}`, {
      cause: error,
    });
  }
}

/** True when the lock names a process of this host that no longer runs (Linux /proc). */
async function isStale(path: string): Promise<boolean> {
  let owner: Partial<LockOwner>;
  try {
    owner = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return false; // being written right now, or unreadable: leave it to its owner
  }
  if (owner.hostname !== Deno.hostname() || typeof owner.pid !== "number") return false;
  if (owner.pid === Deno.pid) return false;
  try {
    await Deno.stat(`/proc/${owner.pid}`);
    return false;
  } catch (error) {
    return error instanceof Deno.errors.NotFound && (await hasProc());
  }
}

async function hasProc(): Promise<boolean> {
  try {
    await Deno.stat(`/proc/self`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Takes the lock at `path`, waiting up to `waitMs`.
 *
 * @param path the lock file
 * @param waitMs how long to wait for another writer
 * @returns a function that releases the lock (idempotent)
 * @throws {RepositoryError} `locked` when the wait runs out
 */
export async function acquireLock(path: string, waitMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + waitMs;
  const attemptsMax = Math.ceil(waitMs / LOCK_POLL_MS) + 1;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    if (await tryCreate(path)) {
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        await Deno.remove(path).catch(() => {});
      };
    }
    if (await isStale(path)) {
      await Deno.remove(path).catch(() => {});
      continue;
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
  throw new RepositoryError(
    "locked",
    `repository is locked by another backup (${path}); waited ${waitMs} ms`,
  );
}
