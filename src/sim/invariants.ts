/**
 * What must hold after every run of the simulated world, whatever the fault:
 *
 * - a committed snapshot equals its source (restored here, outside the world, by the local
 *   restore), or the repository is exactly as before (every file, byte for byte); a snapshot
 *   in the repository is one the server reported committed (a server that reports a failure
 *   for a snapshot it committed misleads whoever retries), unless it crashed; after a crash the
 *   disk keeps only what was synced and the next writer's clean-up has run;
 * - a restore over the channels gives, for each file, either nothing (the old target) or the
 *   complete file; a restore that reports success gives the whole tree;
 * - no descriptor, port, control block or extent is left behind, and the repository lock is
 *   free;
 * - both sides agree on the outcome, or the one that believes "done" holds only dead channels
 *   (at the end every descriptor is closed, so only the direction of disagreement is checked:
 *   a client that saw `committed` while the server did not commit is a violation).
 *
 * @module
 */

import { openRepository, repoPaths } from "../app/repository/repository.ts";
import { restoreSnapshot } from "../app/repository/restore.ts";
import type { WorldPaths, WorldRun } from "./world.ts";

/** Every regular file and symlink below `root`: relative path to its bytes (or link text). */
export async function readTree(root: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string, prefix: string, depth: number) => {
    if (depth > 16) return;
    const names: string[] = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    for (const name of names.sort()) {
      const path = `${dir}/${name}`;
      const info = await Deno.lstat(path);
      const rel = `${prefix}${name}`;
      if (info.isDirectory) {
        files.set(`${rel}/`, "dir");
        await walk(path, `${rel}/`, depth + 1);
      } else if (info.isSymlink) files.set(rel, `-> ${await Deno.readLink(path)}`);
      else files.set(rel, new TextDecoder("latin1").decode(await Deno.readFile(path)));
    }
  };
  await walk(root, "", 0);
  return files;
}

/** The repository's files as they were before a run. */
export type RepoState = Map<string, string>;

/** The differences between two trees, in words (empty when equal). */
export function treeDifferences(
  expected: Map<string, string>,
  found: Map<string, string>,
  ignore: (path: string) => boolean = () => false,
): string[] {
  const out: string[] = [];
  for (const [path, bytes] of expected) {
    if (ignore(path)) continue;
    const got = found.get(path);
    if (got === undefined) out.push(`${path} missing`);
    else if (got !== bytes) {
      out.push(`${path} differs (${got.length} bytes, ${bytes.length} expected)`);
    }
  }
  for (const path of found.keys()) {
    if (!ignore(path) && !expected.has(path)) out.push(`${path} unexpected`);
  }
  return out;
}

/**
 * Checks the invariants after a run.
 *
 * @param run what the world did
 * @param paths its files
 * @param before the repository's files before the run
 * @param scratch an empty directory for the check's own restore
 * @returns the violations, each a sentence (empty when all hold)
 */
export async function checkInvariants(
  run: WorldRun,
  paths: WorldPaths,
  before: RepoState,
  scratch: string,
): Promise<string[]> {
  const violations: string[] = run.leftovers.map((leak) => `left behind: ${leak}`);
  if (run.stopped !== undefined) violations.push(`the world stopped: ${run.stopped}`);
  const source = await readTree(paths.source);
  const now = await readTree(paths.repo);
  const added = [...now.keys()].filter((path) =>
    path.startsWith("snapshots/") && path.endsWith(".manifest.json") && !before.has(path)
  ).map((path) => path.slice("snapshots/".length, -".manifest.json".length));
  if (added.length === 0) {
    for (const diff of treeDifferences(before, now)) {
      violations.push(`nothing was committed, yet the repository changed: ${diff}`);
    }
    if (run.backup.client.status === "done") {
      violations.push("the client believes the backup committed; the server committed nothing");
    }
  }
  if (run.committed !== undefined && !added.includes(run.committed)) {
    violations.push(
      `the server reported snapshot ${run.committed} committed; the repository does not hold it`,
    );
  }
  for (const id of added) {
    // A server that crashed after its commit point could tell no one; any other must report it.
    if (id !== run.committed && !run.serverCrashed) {
      violations.push(
        `the repository holds snapshot ${id}, yet the server reported ` +
          `${run.backup.server.status}: ${run.backup.server.detail}`,
      );
    }
    const restored = await restoreSnapshot({
      repo: paths.repo,
      snapshot: id,
      target: `${scratch}/${id}`,
    }).then(() => undefined, (error: Error) => error.message);
    if (restored !== undefined) {
      violations.push(`committed snapshot ${id} cannot be restored: ${restored}`);
      continue;
    }
    for (const diff of treeDifferences(source, await readTree(`${scratch}/${id}`))) {
      violations.push(`committed snapshot ${id} differs from its source: ${diff}`);
    }
  }
  violations.push(...await restoreViolations(run, paths, source));
  violations.push(...await lockViolations(paths.repo));
  return violations;
}

async function restoreViolations(
  run: WorldRun,
  paths: WorldPaths,
  source: Map<string, string>,
): Promise<string[]> {
  const exists = await Deno.lstat(paths.target).then(() => true, () => false);
  if (!exists) {
    return run.restore.receiver.status === "done" ? ["the restore said done; no target"] : [];
  }
  const target = await readTree(paths.target);
  if (run.restore.receiver.status === "done") {
    return treeDifferences(source, target).map((diff) => `restore said done, but ${diff}`);
  }
  // Interrupted: each file is absent or complete, and nothing else is there.
  const out: string[] = [];
  for (const [path, bytes] of target) {
    const expected = source.get(path);
    if (expected === undefined) out.push(`an interrupted restore left ${path}`);
    else if (expected !== bytes) out.push(`an interrupted restore left ${path} incomplete`);
  }
  return out;
}

async function lockViolations(repoPath: string): Promise<string[]> {
  const repo = await openRepository(repoPath);
  if (await Deno.lstat(repoPaths.lock(repo)).then(() => true, () => false)) {
    return [`the repository lock ${repoPaths.lock(repo)} was left behind`];
  }
  return [];
}
