/**
 * The Deno side of the reliability suite: real files, a real `deno` child process running a
 * backup with the backup task's permissions, killed with SIGKILL at a writer step or after a
 * delay, and lanfree's own backup, verify and restore for the rest.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { denoBackupHarness } from "./backup_harness.ts";
import type {
  CrashPoint,
  MaintenanceCrash,
  MaintenanceOperation,
  ReliabilityHarness,
} from "./reliability_suite.ts";
import type { ManifestEntry } from "../src/core/backup/manifest.ts";
import { consolidateSnapshot } from "../src/app/repository/consolidate.ts";
import { forgetSnapshots } from "../src/app/repository/forget.ts";
import { pruneRepository } from "../src/app/repository/prune.ts";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import {
  isStagingName,
  listSnapshotIds,
  listSnapshots,
  openRepository,
  repoPaths,
} from "../src/app/repository/repository.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";
import { verifyRepository } from "../src/app/repository/verify.ts";
import { type BackupChild, spawnBackupChild, spawnMaintenanceChild } from "../src/app/_testing.ts";

/** How long the rerun may wait for a lock: a dead writer's lock must not need the wait. */
const RERUN_LOCK_WAIT_MS = 5_000;

async function crashBackup(
  source: string,
  repo: string,
  incremental: boolean,
  crash: CrashPoint,
): Promise<"killed" | "completed"> {
  const stopAt = crash.kind === "step" ? crash.step : "none";
  return await killAt(await spawnBackupChild(source, repo, stopAt, incremental), crash);
}

/**
 * Kills `child` with SIGKILL once it reports its step, or after the delay; a child that ended
 * on its own first (it never reached the step, or finished within the delay) must have ended
 * well.
 */
async function killAt(
  child: BackupChild,
  crash: CrashPoint | MaintenanceCrash,
): Promise<"killed" | "completed"> {
  let ended = false;
  const status = child.process.status.then(() => (ended = true));
  let reached = true;
  if (crash.kind === "step") reached = (await child.firstLine).startsWith("at ");
  else {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      status,
      new Promise((resolve) => (timer = setTimeout(resolve, crash.delayMs))),
    ]);
    clearTimeout(timer);
  }
  const killed = reached && !ended;
  const result = killed ? await child.kill("SIGKILL") : await child.process.status;
  if (!killed && !result.success) {
    throw new Error(`the child failed on its own (exit ${result.code})`);
  }
  if (!killed) await child.kill(); // closes its pipes
  return killed ? "killed" : "completed";
}

async function leftovers(repo: string): Promise<string[]> {
  const found: string[] = [];
  const [parent, name] = [dirname(repo), basename(repo)];
  for await (const item of Deno.readDir(parent)) {
    if (isStagingName(item.name, name)) found.push(`../${item.name}`);
  }
  const opened = await openRepository(repo).catch(() => undefined);
  if (opened === undefined) return found;
  if (await Deno.lstat(repoPaths.lock(opened)).then(() => true, () => false)) found.push("lock");
  for await (const item of Deno.readDir(repoPaths.tmp(opened))) found.push(`tmp/${item.name}`);
  // An archive without a manifest is a leftover unless a kept snapshot still reads it (the
  // archive of a forgotten snapshot awaiting prune, or one prune wrote).
  const manifests = await listSnapshots(opened);
  const used = new Set(manifests.flatMap((m) => [m.id, ...m.entries.flatMap(dataOf)]));
  for await (const item of Deno.readDir(repoPaths.snapshots(opened))) {
    if (item.name.endsWith(".tar") && !used.has(item.name.slice(0, -4))) {
      found.push(`snapshots/${item.name}`);
    }
  }
  return found;
}

function dataOf(entry: ManifestEntry): string[] {
  return entry.type === "file" ? [entry.data] : [];
}

async function crashMaintenance(
  operation: MaintenanceOperation,
  repo: string,
  crash: MaintenanceCrash,
): Promise<"killed" | "completed"> {
  const stopAt = crash.kind === "step" ? crash.step : "none";
  return await killAt(await spawnMaintenanceChild(operation, repo, stopAt), crash);
}

/** The harness over lanfree's backup, verify and restore, and real child processes. */
export const denoReliabilityHarness: ReliabilityHarness = {
  makeDir: denoBackupHarness.makeDir,
  removeDir: denoBackupHarness.removeDir,
  writeTree: denoBackupHarness.writeTree,
  describe: denoBackupHarness.describe,
  backup: (source, repo, incremental) =>
    runLocalBackup({ source, repo, incremental, lockWaitMs: RERUN_LOCK_WAIT_MS }),
  crashBackup,
  verify: async (repo) => (await verifyRepository(repo)).problems.map((problem) => problem.message),
  snapshots: async (repo) => await listSnapshotIds(await openRepository(repo)),
  restore: async (repo, snapshot, target) => void await restoreSnapshot({ repo, snapshot, target }),
  leftovers,
  applyChange: denoBackupHarness.applyChange,
  forgetAllButLatest: async (repo) =>
    void await forgetSnapshots({ repo, rules: { last: 1 }, lockWaitMs: RERUN_LOCK_WAIT_MS }),
  maintain: async (operation, repo) => {
    if (operation === "prune") {
      await pruneRepository({ repo, maxUnusedPercent: 0, lockWaitMs: RERUN_LOCK_WAIT_MS });
    } else {
      await consolidateSnapshot({ repo, snapshot: "latest", lockWaitMs: RERUN_LOCK_WAIT_MS });
    }
  },
  crashMaintenance,
};
