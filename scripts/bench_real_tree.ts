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
 * `restic-restore-small` (restic 0.14 from apt; skipped with a message when absent). After the
 * restore the tree is compared with `diff -r --no-dereference`: a fast wrong restore fails the
 * bench.
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
interface Run {
  readonly seconds: number;
  readonly peakMb: number;
  readonly stdout: string;
}

/** `deno run <flags of the task> <script>` from deno.json, with `args` after it. */
function taskCommand(task: string, args: readonly string[]): string[] {
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

async function timedRun(command: string[], env: Record<string, string> = {}): Promise<Run> {
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

function perEntry(name: string, run: Run, entries: number): BenchRow[] {
  return [
    { name, value: run.seconds, unit: "s" },
    { name: `${name}-us`, value: (run.seconds * 1e6) / entries, unit: "µs/entry" },
    { name: `rss-${name}`, value: run.peakMb, unit: "MB" },
  ];
}

async function lanfreeRows(tree: string, dir: string, entries: number) {
  const repo = `${dir}/repo`;
  const backup = await timedRun(
    taskCommand("backup", ["--source", tree, "--repo", repo, "--json"]),
  );
  const snapshot = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;
  const noop = await timedRun(
    taskCommand("backup", ["--source", tree, "--repo", repo, "--json", "--incremental"]),
  );
  const restore = await timedRun(
    taskCommand("restore", ["--repo", repo, "--snapshot", snapshot, "--target", `${dir}/out`]),
  );
  await sh(`diff -r --no-dereference '${tree}' '${dir}/out'`);
  await Deno.mkdir(`${dir}/tar-out`);
  const extract = await sh(`tar -xf '${repo}/snapshots/${snapshot}.tar' -C '${dir}/tar-out'`);
  await sh(`diff -r --no-dereference '${tree}' '${dir}/tar-out'`);
  return [
    ...perEntry("backup-small", backup, entries),
    ...perEntry("noop-small", noop, entries),
    ...perEntry("restore-small", restore, entries),
    { name: "tar-extract-small", value: extract.seconds, unit: "s" },
  ];
}

async function resticRows(tree: string, dir: string): Promise<BenchRow[]> {
  if (!(await onPath("restic"))) {
    console.error(
      "restic is not on PATH (apt-get install restic): restic-small, restic-noop-small and " +
        "restic-restore-small skipped",
    );
    return [];
  }
  const env = { RESTIC_REPOSITORY: `${dir}/restic`, RESTIC_PASSWORD: "bench" };
  await timedRun(["restic", "init", "--quiet"], env);
  const backup = await timedRun(["restic", "backup", "--quiet", tree], env);
  const noop = await timedRun(["restic", "backup", "--quiet", tree], env);
  const restore = await timedRun(
    ["restic", "restore", "latest", "--quiet", "--target", `${dir}/restic-out`],
    env,
  );
  return [
    { name: "restic-small", value: backup.seconds, unit: "s" },
    { name: "rss-restic-small", value: backup.peakMb, unit: "MB" },
    { name: "restic-noop-small", value: noop.seconds, unit: "s" },
    { name: "restic-restore-small", value: restore.seconds, unit: "s" },
  ];
}

/**
 * The `real-tree` group: lanfree, GNU tar and restic on the same generated ~50k-entry tree.
 *
 * @returns the rows
 */
export async function benchRealTree(): Promise<BenchRow[]> {
  const { root, stats } = cachedRealTree(CACHE_DIR, SMALL_TREE, console.error);
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-real-" });
  try {
    await sh(`tar -cf - -C '${root}' . > /dev/null`); // warm the cache for every row alike
    await Deno.mkdir(`${dir}/tar-pipe`);
    const pipe = await sh(`tar -cf - -C '${root}' . | tar -xf - -C '${dir}/tar-pipe'`);
    await Deno.remove(`${dir}/tar-pipe`, { recursive: true });
    const lanfree = await lanfreeRows(root, dir, stats.entries);
    const restic = await resticRows(root, dir);
    return [
      { name: "real-tree-entries", value: stats.entries, unit: "entries" },
      { name: "real-tree-bytes", value: stats.fileBytes / 1e6, unit: "MB" },
      { name: "tar-pipe-small", value: pipe.seconds, unit: "s" },
      ...lanfree,
      ...restic,
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
