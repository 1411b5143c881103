/**
 * The `startup` benchmark group: what every backup and restore pays before its first entry.
 *
 * Rows, each the median of several fresh processes (5, or `LANFREE_STARTUP_ROUNDS`), run as the
 * real CLI (`deno run` with the flags of its `deno task`) under `/usr/bin/time`, so they hold
 * the whole process's wall time and peak RSS as a user sees them:
 * - `startup-deno`: `deno run` of an empty module (the floor: Deno's own start-up);
 * - `startup-backup`: a backup of a one-file tree into a fresh repository (the main isolate,
 *   the client and server Worker hosts, their handshakes over 127.0.0.1 and the region);
 * - `startup-restore`: the restore of that snapshot into a fresh directory;
 * with `rss-startup-backup` and `rss-startup-restore` (peak RSS, MB).
 *
 * @module
 */

import { median, type Run, taskCommand, timedRun } from "./bench_real_tree.ts";
import type { BenchRow } from "./bench.ts";

/** Rounds of the start-up rows (`LANFREE_STARTUP_ROUNDS`, default 5). */
function startupRounds(): number {
  const value = Number(Deno.env.get("LANFREE_STARTUP_ROUNDS") ?? "5");
  return Number.isInteger(value) && value > 0 && value <= 100 ? value : 5;
}

/** One round: the floor, then a one-file backup and its restore, each from fresh directories. */
async function startupRound(dir: string, round: number): Promise<Map<string, Run>> {
  const runs = new Map<string, Run>();
  const source = `${dir}/source-${round}`;
  const repo = `${dir}/repo-${round}`;
  await Deno.mkdir(source);
  await Deno.writeTextFile(`${source}/hello.txt`, `hello from round ${round}\n`);
  runs.set("startup-deno", await timedRun([Deno.execPath(), "run", `${dir}/empty.ts`]));
  const backup = await timedRun(
    taskCommand("backup", ["--source", source, "--repo", repo, "--json"]),
  );
  runs.set("startup-backup", backup);
  const snapshot = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;
  const target = `${dir}/target-${round}`;
  runs.set(
    "startup-restore",
    await timedRun(
      taskCommand("restore", ["--repo", repo, "--snapshot", snapshot, "--target", target]),
    ),
  );
  const restored = await Deno.readTextFile(`${target}/hello.txt`);
  if (restored !== `hello from round ${round}\n`) {
    throw new Error(`startup-restore restored ${JSON.stringify(restored)} into ${target}`);
  }
  return runs;
}

/**
 * The `startup` group: a one-file backup and restore beside an empty `deno run`, medians of
 * several rounds.
 *
 * @returns the rows (seconds, and peak RSS of the lanfree rows)
 */
export async function benchStartup(): Promise<BenchRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-startup-" });
  try {
    await Deno.writeTextFile(`${dir}/empty.ts`, "export {};\n");
    const all = new Map<string, Run[]>();
    for (let round = 0; round < startupRounds(); round++) {
      for (const [name, run] of await startupRound(dir, round)) {
        all.set(name, [...(all.get(name) ?? []), run]);
      }
    }
    return [...all].flatMap(([name, runs]) => [
      { name, value: median(runs.map((run) => run.seconds)), unit: "s" },
      { name: `rss-${name}`, value: median(runs.map((run) => run.peakMb)), unit: "MB" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  for (const row of await benchStartup()) {
    console.log(`${row.name.padEnd(24)} ${row.value.toFixed(2)} ${row.unit}`);
  }
}
