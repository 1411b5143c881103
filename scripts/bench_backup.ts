/**
 * Backup benchmark: generates a ~1 GiB dataset (a few thousand files of 4 KiB–1 MiB plus a few
 * large files, random content) and measures, in one run: `tar-pipe` (`tar -cf - | tar -xf -`;
 * `tar-pipe-synced` waits for its output to reach the disk, as a backup must),
 * `backup-e2e` (the whole product path: client and server Worker hosts, handshakes, file data
 * through the storage region, SHA-256 of every file, fsync'd repository; the archive packed in
 * place in the ring), `backup-e2e-copy` (the same, the archive copied into the ring from the
 * packer's staging buffers, as before the zero-copy path), `backup-local` (the
 * same without channels), `restore-e2e`, `backup-2proc` and `restore-2proc` (an agent process
 * and a server process through a region file, `bench_2proc.ts`), `backup-noop` (an incremental
 * backup with no change),
 * and the peak RSS of end-to-end backups of 1 GiB and of 4 GiB. Adds restic rows when `restic`
 * is on PATH.
 *
 * Run: `deno run -A scripts/bench_backup.ts` (prints the rows as JSON).
 *
 * @module
 */

import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { runBackupJob } from "../src/app/jobs/backup_job.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";
import { bench2proc } from "./bench_2proc.ts";

/** One benchmark result. */
export interface BenchRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const MB = 1e6;
const SMALL_FILES = 1600;
const SMALL_BYTES_MIN = 4096;
const SMALL_BYTES_MAX = 1 << 20;
const LARGE_FILES = 4;
const LARGE_BYTES = 64 << 20;
const RSS_SAMPLE_MS = 20;
const HUGE_FILES = 4;
const HUGE_BYTES = 1 << 30;

/** Writes `sizeBytes` random bytes to a new file. */
export async function randomFile(path: string, sizeBytes: number): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    const block = new Uint8Array(Math.min(sizeBytes, 1 << 20));
    for (let left = sizeBytes; left > 0;) {
      const n = Math.min(left, block.length);
      for (let o = 0; o < n; o += 65536) {
        crypto.getRandomValues(block.subarray(o, Math.min(o + 65536, n)));
      }
      for (let w = 0; w < n;) w += await file.write(block.subarray(w, n));
      left -= n;
    }
  } finally {
    file.close();
  }
}

/** Writes the dataset: a quarter of the small files under `part1`, the rest under `part2`. */
export async function generate(root: string): Promise<number> {
  let total = 0;
  for (let i = 0; i < SMALL_FILES; i++) {
    const dir = `${root}/${i < SMALL_FILES / 4 ? "part1" : "part2"}/d${
      String(i % 40).padStart(2, "0")
    }`;
    await Deno.mkdir(dir, { recursive: true });
    const size = SMALL_BYTES_MIN + Math.floor(Math.random() * (SMALL_BYTES_MAX - SMALL_BYTES_MIN));
    await randomFile(`${dir}/f${i}.bin`, size);
    total += size;
  }
  await Deno.mkdir(`${root}/part2/large`, { recursive: true });
  for (let i = 0; i < LARGE_FILES; i++) {
    await randomFile(`${root}/part2/large/big${i}.bin`, LARGE_BYTES);
    total += LARGE_BYTES;
  }
  return total;
}

/** Runs `body` and measures it. */
export async function timed<T>(body: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const start = performance.now();
  const result = await body();
  return { result, seconds: (performance.now() - start) / 1000 };
}

async function withPeakRss<T>(body: () => Promise<T>): Promise<{ result: T; peakBytes: number }> {
  let peakBytes = Deno.memoryUsage().rss;
  const timer = setInterval(
    () => peakBytes = Math.max(peakBytes, Deno.memoryUsage().rss),
    RSS_SAMPLE_MS,
  );
  try {
    const result = await body();
    return { result, peakBytes: Math.max(peakBytes, Deno.memoryUsage().rss) };
  } finally {
    clearInterval(timer);
  }
}

/** Runs a shell script; throws with its stderr when it fails. */
export async function sh(script: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stderr: "piped" }).output();
  if (!out.success) throw new Error(`${script}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Whether `command` is on PATH. */
export async function onPath(command: string): Promise<boolean> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
  }).output();
  return out.success;
}

async function resticRows(dir: string, data: string, totalBytes: number): Promise<BenchRow[]> {
  if (!(await onPath("restic"))) {
    console.error("restic is not on PATH: restic-backup and restic-noop rows skipped");
    return [];
  }
  const env = `RESTIC_REPOSITORY=${dir}/restic RESTIC_PASSWORD=bench`;
  await sh(`${env} restic init --quiet`);
  const full = await timed(() => sh(`${env} restic backup --quiet ${data}`));
  const noop = await timed(() => sh(`${env} restic backup --quiet ${data}`));
  return [
    { name: "restic-backup", value: totalBytes / MB / full.seconds, unit: "MB/s" },
    { name: "restic-noop", value: noop.seconds, unit: "s" },
  ];
}

/**
 * Runs the benchmark in a temporary directory (removed afterwards).
 *
 * @returns the rows
 *
 * @example Running it (takes about a minute and 3 GB of disk)
 * ```ts ignore
 * import { benchBackup } from "./bench_backup.ts";
 * console.log(await benchBackup());
 * ```
 */
export async function benchBackup(): Promise<BenchRow[]> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-" });
  const job = (source: string, repo: string, incremental = false, zeroCopy = true) =>
    runBackupJob({ source, repo, mode: "fs", incremental, channel: "storage", zeroCopy });
  try {
    const data = `${dir}/data`;
    const totalBytes = await generate(data);
    await Deno.mkdir(`${dir}/scratch`);
    // Each timed row starts with no dirty pages left by the previous step (generating the
    // data, removing the scratch copy), so a row that syncs pays only for its own writes.
    await sh("sync");
    const tarPipe = await timed(() =>
      sh(`tar -cf - -C '${data}' . | tar -xf - -C '${dir}/scratch'`)
    );
    await Deno.remove(`${dir}/scratch`, { recursive: true });
    await sh("sync");
    // The same pipe, but done only once its output is on disk, as a backup's must be.
    await Deno.mkdir(`${dir}/scratch`);
    const tarPipeSynced = await timed(() =>
      sh(`tar -cf - -C '${data}' . | tar -xf - -C '${dir}/scratch' && sync`)
    );
    await Deno.remove(`${dir}/scratch`, { recursive: true });
    await sh("sync");
    const e2e = await withPeakRss(() => job(data, `${dir}/repo-e2e`));
    // The same backup with archive bytes copied into the ring instead of packed in place.
    const e2eCopy = await job(data, `${dir}/repo-e2e-copy`, false, false);
    await Deno.remove(`${dir}/repo-e2e-copy`, { recursive: true });
    const noop = await job(data, `${dir}/repo-e2e`, true);
    const local = await runLocalBackup({ source: data, repo: `${dir}/repo-local` });
    const restore = await restoreSnapshot({
      repo: `${dir}/repo-e2e`,
      snapshot: e2e.result.snapshot,
      target: `${dir}/out`,
    });
    await Deno.remove(`${dir}/out`, { recursive: true });
    await sh("sync");
    const twoProcesses = await bench2proc(data, `${dir}/2proc`);
    await Deno.remove(`${dir}/repo-local`, { recursive: true });
    await Deno.remove(`${dir}/repo-e2e`, { recursive: true });
    const huge = `${dir}/huge`;
    await Deno.mkdir(huge);
    for (let i = 0; i < HUGE_FILES; i++) await randomFile(`${huge}/huge${i}.bin`, HUGE_BYTES);
    await sh("sync");
    const e2e4g = await withPeakRss(() => job(huge, `${dir}/repo-4g`));
    const rows: BenchRow[] = [
      { name: "dataset", value: totalBytes / MB, unit: "MB" },
      { name: "tar-pipe", value: totalBytes / MB / tarPipe.seconds, unit: "MB/s" },
      { name: "tar-pipe-synced", value: totalBytes / MB / tarPipeSynced.seconds, unit: "MB/s" },
      { name: "backup-e2e", value: e2e.result.megabytesPerSecond, unit: "MB/s" },
      { name: "backup-e2e-copy", value: e2eCopy.megabytesPerSecond, unit: "MB/s" },
      { name: "backup-local", value: local.bytes / MB / local.seconds, unit: "MB/s" },
      { name: "restore-e2e", value: restore.bytes / MB / restore.seconds, unit: "MB/s" },
      { name: "backup-noop", value: noop.seconds, unit: "s" },
      { name: "backup-noop-vs-full", value: (100 * noop.seconds) / e2e.result.seconds, unit: "%" },
      { name: "rss-backup-1g", value: e2e.peakBytes / MB, unit: "MB" },
      { name: "rss-backup-4g", value: e2e4g.peakBytes / MB, unit: "MB" },
      { name: "backup-e2e-4g", value: e2e4g.result.megabytesPerSecond, unit: "MB/s" },
    ];
    return [...rows, ...twoProcesses, ...(await resticRows(dir, data, totalBytes))];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) console.log(JSON.stringify(await benchBackup(), null, 2));
