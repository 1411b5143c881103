/**
 * The Deno side of the reliability suite: real files, a real `deno` child process running a
 * backup with the backup task's permissions, killed with SIGKILL at a writer step or after a
 * delay, and lanfree's own backup, verify and restore for the rest.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { denoBackupHarness } from "./backup_harness.ts";
import type { CrashPoint, ReliabilityHarness } from "./reliability_suite.ts";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import {
  isStagingName,
  listSnapshotIds,
  openRepository,
  repoPaths,
} from "../src/app/repository/repository.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";
import { verifyRepository } from "../src/app/repository/verify.ts";
import { spawnBackupChild } from "../src/app/_testing.ts";

/** How long the rerun may wait for a lock: a dead writer's lock must not need the wait. */
const RERUN_LOCK_WAIT_MS = 5_000;

async function crashBackup(
  source: string,
  repo: string,
  incremental: boolean,
  crash: CrashPoint,
): Promise<"killed" | "completed"> {
  const child = await spawnBackupChild(
    source,
    repo,
    crash.kind === "step" ? crash.step : "none",
    incremental,
  );
  let ended = false;
  const status = child.process.status.then(() => (ended = true));
  if (crash.kind === "step") await child.firstLine;
  else {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      status,
      new Promise((resolve) => (timer = setTimeout(resolve, crash.delayMs))),
    ]);
    clearTimeout(timer);
  }
  const killed = !ended;
  const result = await child.kill("SIGKILL");
  if (!killed && !result.success) {
    throw new Error(`the backup child failed on its own (exit ${result.code})`);
  }
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
  const names = new Set<string>();
  for await (const item of Deno.readDir(repoPaths.snapshots(opened))) names.add(item.name);
  for (const name of names) {
    if (name.endsWith(".tar") && !names.has(`${name.slice(0, -4)}.manifest.json`)) {
      found.push(`snapshots/${name}`);
    }
  }
  return found;
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
};
