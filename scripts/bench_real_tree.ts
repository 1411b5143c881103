/**
 * The `real-tree` and `large-tree` benchmark groups (issue 15, issue 9 item 8): lanfree on a
 * generated tree shaped like a real system directory, next to GNU tar and restic in the same run.
 *
 * Every lanfree row runs the real CLI (`deno run` with the flags of its `deno task`, read from
 * `deno.json`) as its own process under `/usr/bin/time`, so the seconds include start-up and
 * the peak RSS is the whole process's (`%M`), exactly as a user would see them.
 *
 * `real-tree` rows (about 53.5k entries, see `_real_tree.ts`): `tar-pipe-small`
 * (`tar -cf - | tar -xf -`), `backup-small`, `noop-small` (an incremental with no change),
 * `restore-small`, each with µs per entry and peak RSS; `tar-extract-small` (GNU tar extracting
 * lanfree's own archive of the tree); `restic-small`, `restic-noop-small`,
 * `restic-restore-small` (restic 0.14 from apt; skipped with a message when absent). After each
 * restore the tree is compared with `diff -r --no-dereference`: a fast wrong restore fails the
 * bench. This machine is shared and its disk is slow right after large removals, so the rows
 * run in interleaved rounds (3, or `LANFREE_BENCH_ROUNDS`), each after a `sync` and a pause,
 * and each row is the median.
 *
 * `large-tree` rows (1,000,000 entries of small files, storage channel): `backup-1m`,
 * `noop-1m` (incremental, no change) and their peak RSS (`rss-backup-1m`, `rss-noop-1m`).
 *
 * @module
 */

import { onPath } from "./bench_backup.ts";
import { cachedRealTree, type RealTreeShape, SMALL_TREE } from "./_real_tree.ts";

/** One benchmark result. */
export interface BenchRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const CACHE_DIR = new URL("../.lanfree/bench", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** The 1M-entry tree: mostly tiny files, so the entry count, not the bytes, is what costs. */
export const LARGE_TREE: RealTreeShape = {
  seed: 9,
  files: 930_000,
  dirs: 20_000,
  symlinks: 50_000,
  medianBytes: 64,
  maxBytes: 4096,
  depthMax: 8,
};

/** A command's wall time, peak RSS and output. */
export interface Run {
  readonly seconds: number;
  readonly peakMb: number;
  readonly stdout: string;
}

/** `deno run <flags of the task> <script>` from deno.json, with `args` after it. */
export function taskCommand(task: string, args: readonly string[]): string[] {
  const config = JSON.parse(Deno.readTextFileSync(CONFIG)) as { tasks: Record<string, string> };
  const words = config.tasks[task]!.split(/\s+/);
  if (words[0] !== "deno") throw new Error(`task ${task} does not start with deno`);
  const root = new URL("..", import.meta.url).pathname;
  return [
    Deno.execPath(),
    ...words.slice(1).map((w) => (w.endsWith(".ts") ? `${root}${w}` : w)),
    ...args,
  ];
}

/**
 * Runs a command under `/usr/bin/time`: its wall time, peak RSS and stdout.
 *
 * @param command the program and its arguments
 * @param env variables to add
 * @returns the run; throws with the end of stderr when the command fails
 */
export async function timedRun(
  command: string[],
  env: Record<string, string> = {},
): Promise<Run> {
  const timeFile = await Deno.makeTempFile({ prefix: "lanfree-bench-time-" });
  try {
    const started = performance.now();
    const out = await new Deno.Command("/usr/bin/time", {
      args: ["-f", "%M", "-o", timeFile, ...command],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - started) / 1000;
    const decoder = new TextDecoder();
    if (!out.success) {
      throw new Error(`${command.join(" ")} failed: ${decoder.decode(out.stderr).slice(-2000)}`);
    }
    const lines = (await Deno.readTextFile(timeFile)).trim().split("\n");
    const peakKb = Number(lines[lines.length - 1]);
    return { seconds, peakMb: (peakKb * 1024) / 1e6, stdout: decoder.decode(out.stdout) };
  } finally {
    await Deno.remove(timeFile).catch(() => {});
  }
}

async function sh(script: string): Promise<Run> {
  return await timedRun(["sh", "-c", script]);
}

/** Rounds of the real-tree rows; each row reports its median (`LANFREE_BENCH_ROUNDS`). */
function rounds(): number {
  const value = Number(Deno.env.get("LANFREE_BENCH_ROUNDS") ?? "3");
  return Number.isInteger(value) && value > 0 ? value : 3;
}

/**
 * Lets the disk settle between rows: removed trees are discarded by the file system in the
 * background, and creating files meanwhile was measured up to ten times slower (this VM's disk
 * is shared), so every timed row starts after a `sync` and a pause.
 */
async function settle(...paths: string[]): Promise<void> {
  for (const path of paths) await Deno.remove(path, { recursive: true }).catch(() => {});
  await sh("sync");
  await new Promise((resolve) => setTimeout(resolve, 2000));
}

/** The middle value (the upper one of an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** One round of every row, in one order, each from the same starting state. */
async function oneRound(tree: string, dir: string, restic: boolean): Promise<Map<string, Run>> {
  const runs = new Map<string, Run>();
  const repo = `${dir}/repo`;
  await settle(`${dir}/tar-pipe`, `${dir}/out`, `${dir}/tar-out`, `${dir}/restic-out`, repo);
  await Deno.mkdir(`${dir}/tar-pipe`);
  runs.set("tar-pipe-small", await sh(`tar -cf - -C '${tree}' . | tar -xf - -C '${dir}/tar-pipe'`));
  await settle(`${dir}/tar-pipe`);
  const backup = await timedRun(
    taskCommand("backup", ["--source", tree, "--repo", repo, "--json"]),
  );
  runs.set("backup-small", backup);
  const snapshot = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;
  await settle();
  runs.set(
    "noop-small",
    await timedRun(
      taskCommand("backup", ["--source", tree, "--repo", repo, "--json", "--incremental"]),
    ),
  );
  await settle();
  runs.set(
    "restore-small",
    await timedRun(
      taskCommand("restore", ["--repo", repo, "--snapshot", snapshot, "--target", `${dir}/out`]),
    ),
  );
  await sh(`diff -r --no-dereference '${tree}' '${dir}/out'`);
  await settle(`${dir}/out`);
  await Deno.mkdir(`${dir}/tar-out`);
  runs.set(
    "tar-extract-small",
    await sh(`tar -xf '${repo}/snapshots/${snapshot}.tar' -C '${dir}/tar-out'`),
  );
  await sh(`diff -r --no-dereference '${tree}' '${dir}/tar-out'`);
  await settle(`${dir}/tar-out`);
  if (restic) { for (const [name, run] of await resticRuns(tree, dir)) runs.set(name, run); }
  return runs;
}

async function resticRuns(tree: string, dir: string): Promise<Map<string, Run>> {
  const env = { RESTIC_REPOSITORY: `${dir}/restic`, RESTIC_PASSWORD: "bench" };
  await settle(`${dir}/restic`, `${dir}/restic-out`);
  await timedRun(["restic", "init", "--quiet"], env);
  const runs = new Map<string, Run>();
  runs.set("restic-small", await timedRun(["restic", "backup", "--quiet", tree], env));
  await settle();
  runs.set("restic-noop-small", await timedRun(["restic", "backup", "--quiet", tree], env));
  await settle();
  runs.set(
    "restic-restore-small",
    await timedRun(
      ["restic", "restore", "latest", "--quiet", "--target", `${dir}/restic-out`],
      env,
    ),
  );
  await settle(`${dir}/restic-out`, `${dir}/restic`);
  return runs;
}

/** The rows of a name: median seconds, and for lanfree's µs per entry and median peak RSS. */
function rowsOf(name: string, runs: readonly Run[], entries: number): BenchRow[] {
  const seconds = median(runs.map((r) => r.seconds));
  const rows: BenchRow[] = [{ name, value: seconds, unit: "s" }];
  if (name.startsWith("tar-")) return rows;
  rows.push({ name: `rss-${name}`, value: median(runs.map((r) => r.peakMb)), unit: "MB" });
  if (!name.startsWith("restic")) {
    rows.push({ name: `${name}-us`, value: (seconds * 1e6) / entries, unit: "µs/entry" });
  }
  return rows;
}

/**
 * The `real-tree` group: lanfree, GNU tar and restic on the same generated ~50k-entry tree,
 * every row measured in each of several interleaved rounds (median reported).
 *
 * @returns the rows
 */
export async function benchRealTree(): Promise<BenchRow[]> {
  const { root, stats } = cachedRealTree(CACHE_DIR, SMALL_TREE, console.error);
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-real-" });
  try {
    await sh(`tar -cf - -C '${root}' . > /dev/null`); // warm the cache for every row alike
    const restic = await onPath("restic");
    if (!restic) {
      console.error(
        "restic is not on PATH (apt-get install restic): restic-small, restic-noop-small and " +
          "restic-restore-small skipped",
      );
    }
    const all = new Map<string, Run[]>();
    for (let round = 0; round < rounds(); round++) {
      for (const [name, run] of await oneRound(root, dir, restic)) {
        all.set(name, [...(all.get(name) ?? []), run]);
      }
    }
    return [
      { name: "real-tree-entries", value: stats.entries, unit: "entries" },
      { name: "real-tree-bytes", value: stats.fileBytes / 1e6, unit: "MB" },
      ...[...all].flatMap(([name, runs]) => rowsOf(name, runs, stats.entries)),
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The `large-tree` group: a full and a no-change incremental backup of 1M entries on the
 * storage channel, with peak RSS (issue 9 item 8's goal: under 500 MB).
 *
 * @returns the rows
 */
export async function benchLargeTree(): Promise<BenchRow[]> {
  const { root, stats } = cachedRealTree(CACHE_DIR, LARGE_TREE, console.error);
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-large-" });
  try {
    const repo = `${dir}/repo`;
    const args = ["--source", root, "--repo", repo, "--json", "--channel", "storage"];
    const full = await timedRun(taskCommand("backup", args));
    const noop = await timedRun(taskCommand("backup", [...args, "--incremental"]));
    return [
      { name: "large-tree-entries", value: stats.entries, unit: "entries" },
      { name: "backup-1m", value: full.seconds, unit: "s" },
      { name: "rss-backup-1m", value: full.peakMb, unit: "MB" },
      { name: "noop-1m", value: noop.seconds, unit: "s" },
      { name: "rss-noop-1m", value: noop.peakMb, unit: "MB" },
    ];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const rows = Deno.args.includes("--large") ? await benchLargeTree() : await benchRealTree();
  for (const row of rows) console.log(`${row.name.padEnd(24)} ${row.value.toFixed(2)} ${row.unit}`);
}
