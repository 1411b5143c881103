/**
 * What forget, prune and consolidate share with a backup's writer: they run under the
 * repository's writer lock, start by settling what an interrupted writer left, and report their
 * steps to a drill hook (crash tests stop a process at a step and kill it there).
 *
 * @module
 */

import { acquireLock, LOCK_WAIT_MS_DEFAULT } from "./_repo_lock.ts";
import { removeStale } from "./_repo_files.ts";
import { repoPaths, type Repository } from "./repository.ts";

export { localTimeZone } from "../_retention_cli.ts";

/** Steps every maintenance operation reports: the lock held, leftovers settled, lock released. */
export type CommonStep = "locked" | "cleaned" | "released";

/** Options every maintenance operation takes. */
export interface MaintenanceOptions<Step extends string> {
  /** How long to wait for another writer's lock (default 30 s). */
  readonly lockWaitMs?: number;
  /** Stops waiting for the lock; operations also check it before their first change. */
  readonly signal?: AbortSignal;
  /** Drill hook: awaited at every step (crash tests stop a process here). */
  readonly onStep?: (step: Step | CommonStep) => Promise<void> | void;
}

/**
 * Runs `body` under the repository's writer lock, after removing what interrupted writers left.
 *
 * @param repo the repository
 * @param options lock wait, signal and drill hook
 * @param body the operation; it gets the step reporter
 * @returns what `body` returns
 * @throws {RepositoryError} `locked` when another writer keeps the lock
 */
export async function underWriterLock<Step extends string, T>(
  repo: Repository,
  options: MaintenanceOptions<Step>,
  body: (step: (step: Step) => Promise<void>) => Promise<T>,
): Promise<T> {
  const step = async (name: Step | CommonStep) => await options.onStep?.(name);
  const release = await acquireLock(
    repoPaths.lock(repo),
    options.lockWaitMs ?? LOCK_WAIT_MS_DEFAULT,
    options.signal,
  );
  let result: T;
  try {
    await step("locked");
    await removeStale(repo);
    await step("cleaned");
    result = await body(step);
  } finally {
    await release();
  }
  await step("released");
  return result;
}
