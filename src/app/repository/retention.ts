/**
 * Retention after a backup (`deno task backup --keep-* ...`, a backup job's `keep`): forget with
 * the rules, restricted to the backup's own source and kind, then prune.
 *
 * @module
 */

import { type ForgetOptions, type ForgetReport, forgetSnapshots } from "./forget.ts";
import { type PruneReport, pruneRepository } from "./prune.ts";

/** Options of {@link applyRetention}: forget's, with the source and kind required. */
export interface RetentionOptions extends Omit<ForgetOptions, "onStep" | "dryRun"> {
  /** The source whose snapshots the rules apply to (as recorded in manifests). */
  readonly source: string;
  /** Their kind. */
  readonly kind: "fs" | "db";
  /** Prune's `maxUnusedPercent`. */
  readonly maxUnusedPercent?: number;
}

/** What retention did. */
export interface RetentionReport {
  /** What forget kept and removed. */
  readonly forget: ForgetReport;
  /** What prune removed and repacked. */
  readonly prune: PruneReport;
}

/**
 * Forgets the snapshots of one source and kind that no rule keeps, then prunes.
 *
 * @param options repository, rules, zone, source and kind, lock wait
 * @returns what forget and prune did
 * @throws what forget and prune throw (`locked`, `corrupt`, RangeError for bad rules)
 */
export async function applyRetention(options: RetentionOptions): Promise<RetentionReport> {
  const forget = await forgetSnapshots(options);
  const prune = await pruneRepository({
    repo: options.repo,
    maxUnusedPercent: options.maxUnusedPercent,
    lockWaitMs: options.lockWaitMs,
    signal: options.signal,
  });
  return { forget, prune };
}
