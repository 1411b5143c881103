/**
 * Forget: applies keep rules to a repository's snapshots (each source and kind on its own) and
 * removes the manifests of the snapshots no rule keeps. Archives stay: a kept snapshot may still
 * read a forgotten one's files; `prune` removes what nothing references. Removing a manifest is
 * the commit point of a backup in reverse, so it happens under the writer lock, one manifest at
 * a time; a forget killed midway has removed some of them, and a rerun removes the rest (the
 * rules decide the same on what is left).
 *
 * @module
 */

import {
  applyKeepRules,
  type KeepRules,
  keepRulesProblem,
  type RetentionGroup,
  type RetentionSnapshot,
} from "../../core/backup/retention.ts";
import { localTimeZone, type MaintenanceOptions, underWriterLock } from "./_maintenance.ts";
import { syncDir } from "./_repo_files.ts";
import { canonicalPath } from "../paths.ts";
import { listSnapshotIds, openRepository, repoPaths, type Repository } from "./repository.ts";
import { readSnapshotHead } from "./snapshot_summaries.ts";

/** Steps of forget a drill hook sees besides `locked`, `cleaned` and `released`. */
export type ForgetStep = "record-removed" | "manifest-removed";

/** Options of {@link forgetSnapshots}. */
export interface ForgetOptions extends MaintenanceOptions<ForgetStep> {
  /** The repository directory (or an opened repository). */
  readonly repo: string | Repository;
  /** The keep rules. */
  readonly rules: KeepRules;
  /** The IANA zone calendar periods are counted in; the local zone by default, as restic. */
  readonly timeZone?: string;
  /** Now (the reference `within` never passes); `Date.now()` by default. */
  readonly nowMs?: number;
  /** Decide and report, remove nothing (and take no lock). */
  readonly dryRun?: boolean;
  /** Only snapshots of this source (the path it was backed up from; it need not exist). */
  readonly source?: string;
  /** Only snapshots of this kind. */
  readonly kind?: "fs" | "db";
}

/** What forget decided and did. */
export interface ForgetReport {
  /** True when nothing was removed on purpose. */
  readonly dryRun: boolean;
  /** The zone the periods were counted in. */
  readonly timeZone: string;
  /** Each group's decisions, newest first, with the rules that keep each kept snapshot. */
  readonly groups: readonly RetentionGroup[];
  /** Ids kept (oldest first). */
  readonly kept: readonly string[];
  /** Ids removed, or that a dry run would remove (oldest first). */
  readonly removed: readonly string[];
}

async function readHeads(
  repo: Repository,
  filter: { source?: string; kind?: "fs" | "db" },
): Promise<RetentionSnapshot[]> {
  const heads: RetentionSnapshot[] = [];
  for (const id of await listSnapshotIds(repo)) {
    const head = await readSnapshotHead(repo, id);
    if (filter.source !== undefined && head.source !== filter.source) continue;
    if (filter.kind !== undefined && head.kind !== filter.kind) continue;
    heads.push(head);
  }
  return heads;
}

/**
 * Applies keep rules and removes the manifests of the snapshots no rule keeps.
 *
 * @param options repository, rules, zone, dry run, source filter, lock wait and drill hook
 * @returns every group's decisions and the ids kept and removed
 * @throws {RangeError} for invalid rules or time zone; {@link RepositoryError} `locked`, or
 *   `corrupt` for a manifest that cannot be read (nothing is removed then: its group is unknown)
 *
 * @example Keeping the last snapshot of each source
 * ```ts
 * import assert from "node:assert/strict";
 * import { forgetSnapshots } from "./forget.ts";
 * import { runLocalBackup } from "../jobs/local_backup.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/src`);
 * await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * const newest = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
 * const report = await forgetSnapshots({ repo: `${dir}/repo`, rules: { last: 1 } });
 * assert.deepEqual(report.kept, [newest.snapshot]);
 * assert.equal(report.removed.length, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function forgetSnapshots(options: ForgetOptions): Promise<ForgetReport> {
  const timeZone = options.timeZone ?? localTimeZone();
  const problem = keepRulesProblem(options.rules, timeZone);
  if (problem !== undefined) throw new RangeError(problem);
  const repo = typeof options.repo === "string" ? await openRepository(options.repo) : options.repo;
  const filter = {
    source: options.source === undefined ? undefined : await canonicalPath(options.source),
    kind: options.kind,
  };
  const decide = async (): Promise<ForgetReport> => {
    const heads = await readHeads(repo, filter);
    const groups = applyKeepRules(heads, options.rules, {
      nowMs: options.nowMs ?? Date.now(),
      timeZone,
    });
    const decisions = groups.flatMap((g) => g.decisions);
    const ids = (keep: boolean) =>
      decisions.filter((d) => d.keep === keep).map((d) => d.snapshot.id).sort();
    return {
      dryRun: options.dryRun ?? false,
      timeZone,
      groups,
      kept: ids(true),
      removed: ids(false),
    };
  };
  if (options.dryRun) return await decide();
  return await underWriterLock(repo, options, async (step) => {
    const report = await decide();
    options.signal?.throwIfAborted();
    for (const id of report.removed) {
      // The checked record goes first: killed before the manifest goes, the snapshot stays
      // without a record (harmless: the next incremental checks it in full, a rerun removes
      // it), never a record without its manifest (junk until the next prune).
      await Deno.remove(repoPaths.checked(repo, id)).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
      await step("record-removed");
      await Deno.remove(repoPaths.manifest(repo, id));
      await step("manifest-removed");
    }
    await syncDir(repoPaths.snapshots(repo));
    return report;
  });
}
