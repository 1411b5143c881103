/**
 * The Deno side of the retention lifecycle suite: lanfree's local backup, forget, prune,
 * consolidate, verify and restore on real files, and crashes made by copying the repository at
 * a step (what a process killed there leaves) and putting the copy in place afterwards.
 *
 * @module
 */

import { denoBackupHarness } from "./backup_harness.ts";
import type { LifecycleChange, LifecycleHarness, Outcome } from "./retention_lifecycle_suite.ts";
import type { SeenEntry } from "./backup_suite.ts";
import { consolidateSnapshot } from "../src/app/repository/consolidate.ts";
import { forgetSnapshots } from "../src/app/repository/forget.ts";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { pruneRepository } from "../src/app/repository/prune.ts";
import {
  listSnapshotIds,
  listSnapshots,
  openRepository,
} from "../src/app/repository/repository.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";
import { verifyRepository } from "../src/app/repository/verify.ts";
import { copyTree, describeTree } from "../src/app/_testing.ts";

/** A writer after a crash must not wait long: the dead process's lock is no longer held. */
const LOCK_WAIT_MS = 5_000;

/**
 * Runs `operation` with a step hook that copies `repo` when the `crashAt`-th step is reached,
 * then puts that copy in the repository's place: the disk as a process killed there leaves it.
 */
async function crashing<T>(
  repo: string,
  crashAt: number | undefined,
  operation: (onStep: () => Promise<void>) => Promise<T>,
): Promise<{ result: T; crashed: boolean }> {
  let steps = 0;
  let copy: string | undefined;
  const result = await operation(async () => {
    if (crashAt === undefined || steps++ !== crashAt) return;
    copy = `${repo}.crashed-${crypto.randomUUID()}`;
    await copyTree(repo, copy);
  });
  if (copy === undefined) return { result, crashed: false };
  await Deno.remove(repo, { recursive: true });
  await Deno.rename(copy, repo);
  return { result, crashed: true };
}

/** The files under `root` that share an inode with an earlier path: `path -> first path`. */
async function linkGroups(
  root: string,
  entries: readonly SeenEntry[],
): Promise<Map<string, string>> {
  const first = new Map<string, string>();
  const links = new Map<string, string>();
  for (const entry of entries) {
    if (entry.type !== "file") continue;
    const info = await Deno.lstat(`${root}/${entry.path}`);
    if (info.nlink === null || info.nlink < 2) continue;
    const key = `${info.dev}:${info.ino}`;
    const earlier = first.get(key);
    if (earlier === undefined) first.set(key, entry.path);
    else links.set(entry.path, earlier);
  }
  return links;
}

async function describe(root: string): Promise<SeenEntry[]> {
  const entries = await describeTree(root);
  const links = await linkGroups(root, entries);
  return entries.map((e) => {
    const to = links.get(e.path);
    return to === undefined ? e : { ...e, detail: `${e.detail} linked to ${to}` };
  });
}

async function applyChange(root: string, change: LifecycleChange): Promise<void> {
  if (change.op !== "link") return await denoBackupHarness.applyChange(root, change);
  const files = (await describeTree(root)).filter((e) => e.type === "file");
  const file = files[change.pick % Math.max(files.length, 1)];
  if (file === undefined) return;
  const slash = file.path.lastIndexOf("/");
  const to = `${slash === -1 ? "" : `${file.path.slice(0, slash)}/`}${change.name}`;
  if (await Deno.lstat(`${root}/${to}`).then(() => true, () => false)) return;
  await Deno.link(`${root}/${file.path}`, `${root}/${to}`);
}

async function unreferenced(repo: string): Promise<string[]> {
  const manifests = await listSnapshots(await openRepository(repo));
  const used = new Set(
    manifests.flatMap((
      m,
    ) => [m.id, ...m.entries.flatMap((e) => (e.type === "file" ? [e.data] : []))]),
  );
  const found: string[] = [];
  for await (const item of Deno.readDir(`${repo}/snapshots`)) {
    if (item.name.endsWith(".tar") && !used.has(item.name.slice(0, -4))) found.push(item.name);
  }
  return found;
}

const outcome = ({ crashed }: { crashed: boolean }): Outcome => ({ crashed });

/** The harness over lanfree's retention operations and the real disk. */
export const denoLifecycleHarness: LifecycleHarness = {
  makeDir: () => Deno.makeTempDir({ prefix: "lanfree-retention-" }),
  removeDir: (path) => Deno.remove(path, { recursive: true }),
  writeTree: denoBackupHarness.writeTree,
  applyChange,
  describe,
  backup: (source, repo, incremental) =>
    runLocalBackup({ source, repo, incremental, lockWaitMs: LOCK_WAIT_MS }),
  forget: async (repo, rules, crashAt) => {
    const run = await crashing(
      repo,
      crashAt,
      (onStep) =>
        forgetSnapshots({ repo, rules, timeZone: "UTC", lockWaitMs: LOCK_WAIT_MS, onStep }),
    );
    return { crashed: run.crashed, removed: [...run.result.removed] };
  },
  prune: async (repo, crashAt, maxUnusedPercent) =>
    outcome(
      await crashing(repo, crashAt, (onStep) =>
        pruneRepository({ repo, maxUnusedPercent, lockWaitMs: LOCK_WAIT_MS, onStep })),
    ),
  consolidate: async (repo, snapshot, crashAt) =>
    outcome(
      await crashing(repo, crashAt, (onStep) =>
        consolidateSnapshot({ repo, snapshot, lockWaitMs: LOCK_WAIT_MS, onStep })),
    ),
  snapshots: async (repo) => await listSnapshotIds(await openRepository(repo)),
  verify: async (repo) => (await verifyRepository(repo)).problems.map((p) => p.message),
  restore: async (repo, snapshot, target) => void await restoreSnapshot({ repo, snapshot, target }),
  unreferenced,
};
