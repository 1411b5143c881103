/**
 * Retention benchmark: the ~1 GiB dataset of `bench_backup.ts`, backed up ten times (a full
 * snapshot, then nine incremental ones, each after about a tenth of the small files and one
 * large file were rewritten), then forgotten down to the last 3 and pruned. Rows:
 * `prune-1g` (seconds of forget and prune, repacking included), `prune-1g-before` and
 * `prune-1g-after` (MB on disk), and, with `restic` on PATH, the same data backed up by restic
 * at the same ten states and `restic forget --keep-last 3 --prune` timed: `restic-prune`,
 * `restic-prune-before`, `restic-prune-after`. Without restic those rows are skipped with a
 * message.
 *
 * Run: `deno run -A scripts/bench_prune.ts` (prints the rows as JSON; about 6 GB of disk).
 *
 * @module
 */

import { forgetSnapshots } from "../src/app/repository/forget.ts";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { pruneRepository } from "../src/app/repository/prune.ts";
import { type BenchRow, generate, onPath, randomFile, sh, timed } from "./bench_backup.ts";

const SNAPSHOTS = 10;
const KEEP_LAST = 3;
const MB = 1e6;
/** Share of the small files rewritten before each incremental snapshot. */
const CHURN_EVERY = 10;

/** Bytes of every file under `root` (its disk usage as the files' sizes). */
async function bytesUnder(root: string): Promise<number> {
  let total = 0;
  for await (const item of Deno.readDir(root)) {
    const path = `${root}/${item.name}`;
    if (item.isDirectory) total += await bytesUnder(path);
    else if (item.isFile) total += (await Deno.stat(path)).size;
  }
  return total;
}

/** The dataset's files, sorted (the same order in every round). */
async function files(root: string, out: string[] = []): Promise<string[]> {
  for await (const item of Deno.readDir(root)) {
    const path = `${root}/${item.name}`;
    if (item.isDirectory) await files(path, out);
    else out.push(path);
  }
  return out.sort();
}

/** Rewrites a tenth of the small files (a different tenth each round) and one large file. */
async function churn(data: string, round: number): Promise<void> {
  const all = await files(data);
  const small = all.filter((path) => !path.includes("/large/"));
  const large = all.filter((path) => path.includes("/large/"));
  const rewrite = async (path: string) => {
    const size = (await Deno.stat(path)).size;
    await Deno.remove(path);
    await randomFile(path, size);
  };
  for (let i = round % CHURN_EVERY; i < small.length; i += CHURN_EVERY) await rewrite(small[i]!);
  await rewrite(large[round % large.length]!);
}

/** `restic forget --keep-last 3 --prune` on restic's repository of the same ten states. */
async function resticRows(dir: string, withRestic: boolean): Promise<BenchRow[]> {
  if (!withRestic) {
    console.error("restic is not on PATH: the restic-prune rows are skipped");
    return [];
  }
  const env = `RESTIC_REPOSITORY=${dir}/restic RESTIC_PASSWORD=bench`;
  const before = await bytesUnder(`${dir}/restic`);
  await sh("sync");
  const prune = await timed(() =>
    sh(`${env} restic forget --quiet --keep-last ${KEEP_LAST} --prune && sync`)
  );
  return [
    { name: "restic-prune", value: prune.seconds, unit: "s" },
    { name: "restic-prune-before", value: before / MB, unit: "MB" },
    { name: "restic-prune-after", value: (await bytesUnder(`${dir}/restic`)) / MB, unit: "MB" },
  ];
}

/**
 * Runs the benchmark in a temporary directory (removed afterwards).
 *
 * @returns the rows
 *
 * @example Running it (a few minutes and about 6 GB of disk)
 * ```ts ignore
 * import { benchPrune } from "./bench_prune.ts";
 * console.log(await benchPrune());
 * ```
 */
export async function benchPrune(): Promise<BenchRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-prune-" });
  try {
    const data = `${dir}/data`;
    const repo = `${dir}/repo`;
    await generate(data);
    const withRestic = await onPath("restic");
    const env = `RESTIC_REPOSITORY=${dir}/restic RESTIC_PASSWORD=bench`;
    if (withRestic) await sh(`${env} restic init --quiet`);
    for (let round = 0; round < SNAPSHOTS; round++) {
      if (round > 0) await churn(data, round);
      await runLocalBackup({ source: data, repo, incremental: round > 0 });
      if (withRestic) await sh(`${env} restic backup --quiet ${data}`);
    }
    const before = await bytesUnder(repo);
    await sh("sync");
    // Both sides are timed until their result is on disk.
    const prune = await timed(async () => {
      await forgetSnapshots({ repo, rules: { last: KEEP_LAST } });
      const report = await pruneRepository({ repo });
      await sh("sync");
      return report;
    });
    const repacked = prune.result.archives.filter((a) => a.action === "repack").length;
    console.error(`prune-1g: ${repacked} archives repacked`);
    const rows: BenchRow[] = [
      { name: "prune-1g", value: prune.seconds, unit: "s" },
      { name: "prune-1g-before", value: before / MB, unit: "MB" },
      { name: "prune-1g-after", value: (await bytesUnder(repo)) / MB, unit: "MB" },
    ];
    return [...rows, ...(await resticRows(dir, withRestic))];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) console.log(JSON.stringify(await benchPrune(), null, 2));
