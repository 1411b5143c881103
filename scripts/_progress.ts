/**
 * The progress a CLI shows while a job runs (backup, restore): a bar on a terminal, plain lines
 * otherwise, and the numbers both show.
 *
 * @module
 */

import process from "node:process";
// @deno-types="@types/cli-progress"
import cliProgress from "cli-progress";
import type { BackupProgress } from "../src/app/hosts/peer_reports.ts";

/** What the progress display shows: done and total in one unit, and the percentage. */
export interface ProgressText {
  readonly done: number;
  readonly total: number;
  readonly unit: string;
  readonly percent: number;
}

const PROGRESS_UNITS: ReadonlyArray<readonly [string, number]> = [
  ["GB", 1e9],
  ["MB", 1e6],
  ["KB", 1e3],
];

/**
 * The numbers a progress bar or line shows: done and total in the one unit that gives the total
 * at least two digits; the total is never below what was already sent (the planned total is an
 * estimate of the archive, made before the bar starts), and 100% means everything was sent.
 *
 * @param progress bytes sent and the total planned
 * @returns done and total in one unit, and the percentage
 *
 * @example Half of 1 MB
 * ```ts
 * import assert from "node:assert/strict";
 * import { progressText } from "./_progress.ts";
 * assert.deepEqual(progressText({ files: 1, bytes: 500_000, totalBytes: 1_000_000 }), {
 *   done: 500, total: 1000, unit: "KB", percent: 50,
 * });
 * ```
 */
export function progressText(progress: BackupProgress): ProgressText {
  const totalBytes = Math.max(progress.totalBytes, progress.bytes, 1);
  const [unit, scale] = PROGRESS_UNITS.find(([, size]) => totalBytes / size >= 10) ?? ["B", 1];
  const percent = Math.floor((100 * progress.bytes) / totalBytes);
  return {
    done: Math.floor(progress.bytes / scale),
    total: Math.ceil(totalBytes / scale),
    unit,
    percent,
  };
}

/**
 * Progress once the job has run for a second: a bar on a terminal, plain lines otherwise.
 *
 * @param mode `bar`, `lines`, or `none` (with `--json`)
 * @param what the job's name on each line (`backup`, `restore`)
 * @returns `update` for each progress, `stop` at the end
 */
export function progressReporter(mode: "bar" | "lines" | "none", what = "backup"): {
  update(progress: BackupProgress): void;
  stop(): void;
} {
  const startedMs = performance.now();
  const linesEveryMs = 2000;
  let lastLineMs = 0;
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(progress: BackupProgress) {
      const nowMs = performance.now();
      if (mode === "none" || nowMs - startedMs < 1000) return;
      const text = progressText(progress);
      if (mode === "lines") {
        if (nowMs - lastLineMs < linesEveryMs) return;
        lastLineMs = nowMs;
        console.error(
          `${what}: ${text.done} of ${text.total} ${text.unit} (${text.percent}%), ` +
            `${progress.files} files`,
        );
        return;
      }
      if (bar === undefined) {
        bar = new cliProgress.SingleBar({
          stream: process.stderr,
          format: `${what} {bar} {percentage}% | {value}/{total} {unit} | {files} files`,
          hideCursor: true,
        }, cliProgress.Presets.shades_classic);
        bar.start(text.total, 0, { files: progress.files, unit: text.unit });
      }
      bar.setTotal(text.total);
      bar.update(Math.min(text.total, text.done), { files: progress.files, unit: text.unit });
    },
    stop: () => bar?.stop(),
  };
}
