/**
 * `deno task backup`: backs up a directory (or a SQLite database) into a repository. The client
 * and the server each run in their own Worker host on this machine; they set up their channels
 * with the seeds' handshakes over 127.0.0.1 and a shared storage region, and file data travels
 * through storage while control and errors stay on the network.
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
// @deno-types="@types/cli-progress"
import cliProgress from "cli-progress";
import { z } from "zod";
import {
  type BackupJobOptions,
  type BackupJobSummary,
  runBackupJob,
} from "../src/app/backup_job.ts";
import type { BackupProgress } from "../src/app/backup_client.ts";
import { applyRetention, type RetentionReport } from "../src/app/retention.ts";
import { formatBytes, KEEP_OPTIONS, KEEP_USAGE, keepRulesOf } from "../src/app/_retention_cli.ts";
import { localTimeZone } from "../src/app/_maintenance.ts";
import { hasKeepRule, type KeepRules } from "../src/core/backup/retention.ts";

const USAGE = `usage: deno task backup [options] [--keep-* ...]

Backs up --source (default: the sample tree in fixtures/sample) into --repo (default:
./.lanfree/repo). The client and the server run as two hosts on this machine: control and
errors go over TCP on 127.0.0.1, file data through the shared storage region.

  --source DIR          directory to back up (fs mode)
  --repo DIR            repository directory (created if missing)
  --mode fs|db          file-system backup (default) or a SQLite database (--db)
  --db FILE             the database to back up in db mode
  --incremental         only what changed since the latest snapshot of the same source
  --channel auto|storage|network
                        auto (default): storage, else the network with the reason;
                        storage: fail if storage cannot be set up; network: skip storage
  --region-mib N        size of the storage region (default 64; 0 attaches none)
  --control-blocks N    control blocks in the region (default 64)
  --json                print one JSON summary on stdout
  --help                this text

Automatic retention: with any --keep-* option, once the snapshot is committed the snapshots of
this source and mode that no rule keeps are forgotten and the repository is pruned (as
deno task forget --prune would); the summary says what was removed.
${KEEP_USAGE}

Exit status (restic's convention):
  0    the snapshot was made and holds every entry of the source
  1    no snapshot was made (the source, the repository or the channels failed)
  2    bad usage (unknown flag, bad value)
  3    the snapshot was made, but some files could not be read and are not in it (they are
       listed as skipped, with the reason, in the summary and in --json)
  With --keep-*, a retention that fails after the snapshot was made exits 1 and says so.`;

/** Exit status: a snapshot was made but some files could not be read (restic's convention). */
export const EXIT_INCOMPLETE = 3;

const OptionsSchema = z.strictObject({
  source: z.string().min(1),
  repo: z.string().min(1),
  mode: z.enum(["fs", "db"], { error: "--mode must be fs or db" }),
  db: z.string().min(1).optional(),
  incremental: z.boolean(),
  channel: z.enum(["auto", "storage", "network"], {
    error: "--channel must be auto, storage or network",
  }),
  regionMib: z.int({ error: "--region-mib must be an integer" }).min(0).max(1024, {
    error: "--region-mib must be at most 1024",
  }),
  controlBlocks: z.int({ error: "--control-blocks must be an integer" }).min(1).max(4096, {
    error: "--control-blocks must be between 1 and 4096",
  }),
});

/** Parses the command line into job options; throws UsageError with one clear line. */
export function parseBackupArgs(
  args: string[],
): BackupJobOptions & {
  json: boolean;
  help: boolean;
  keep?: { rules: KeepRules; timeZone: string };
} {
  const { values } = parseArgs({
    args,
    options: {
      source: { type: "string" },
      repo: { type: "string" },
      mode: { type: "string", default: "fs" },
      db: { type: "string" },
      incremental: { type: "boolean", default: false },
      channel: { type: "string", default: "auto" },
      "region-mib": { type: "string", default: "64" },
      "control-blocks": { type: "string", default: "64" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...KEEP_OPTIONS,
    },
    strict: true,
    allowPositionals: false,
  });
  const parsed = OptionsSchema.safeParse({
    source: values.source ?? new URL("../fixtures/sample", import.meta.url).pathname,
    repo: values.repo ?? ".lanfree/repo",
    mode: values.mode,
    db: values.db,
    incremental: values.incremental,
    channel: values.channel,
    regionMib: Number(values["region-mib"]),
    controlBlocks: Number(values["control-blocks"]),
  });
  if (!parsed.success) throw new UsageError(parsed.error.issues[0]!.message);
  const options = parsed.data;
  if (options.mode === "db" && options.db === undefined) {
    throw new UsageError("--mode db needs --db FILE");
  }
  if (options.mode === "fs" && options.db !== undefined) {
    throw new UsageError("--db is for --mode db");
  }
  let keep: { rules: KeepRules; timeZone: string } | undefined;
  try {
    keep = keepRulesOf(values, localTimeZone());
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  return {
    ...options,
    source: options.mode === "db" ? options.db! : options.source,
    json: values.json,
    help: values.help,
    ...(hasKeepRule(keep.rules) ? { keep } : {}),
  };
}

/** A command-line mistake. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

async function checkSource(source: string, mode: "fs" | "db"): Promise<void> {
  const info = await Deno.stat(source).catch(() => undefined);
  if (info === undefined) throw new Error(`source ${source} does not exist`);
  if (mode === "fs" && !info.isDirectory) throw new Error(`source ${source} is not a directory`);
  if (mode === "db" && !info.isFile) throw new Error(`database ${source} is not a file`);
}

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
 * import { progressText } from "./backup.ts";
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

/** Progress once the job has run for a second: a bar on a terminal, plain lines otherwise. */
function progressReporter(mode: "bar" | "lines" | "none") {
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
          `backup: ${text.done} of ${text.total} ${text.unit} (${text.percent}%), ` +
            `${progress.files} files`,
        );
        return;
      }
      if (bar === undefined) {
        bar = new cliProgress.SingleBar({
          stream: process.stderr,
          format: "backup {bar} {percentage}% | {value}/{total} {unit} | {files} files",
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

function printSummary(summary: BackupJobSummary, repo: string): void {
  const kind = summary.parent === null ? "full" : `incremental of ${summary.parent}`;
  const number = (n: number) => n.toLocaleString("en-US");
  console.log(`lanfree backup: snapshot ${summary.snapshot} (${kind})`);
  console.log(`  source      ${summary.source} (${summary.mode} mode)`);
  if (summary.fullReason !== null) console.log(`  full        ${summary.fullReason}`);
  console.log(
    `  files       ${number(summary.files)} archived of ${number(summary.filesTotal)}, ` +
      `${number(summary.fileBytes)} bytes; ${summary.skipped.length} skipped`,
  );
  for (const entry of summary.skipped) {
    console.log(`    skipped ${JSON.stringify(entry.path)}: ${entry.reason}`);
  }
  for (const entry of summary.excluded) {
    console.log(`    excluded ${JSON.stringify(entry.path)}: ${entry.reason}`);
  }
  console.log(
    `  data path   ${
      summary.dataPath === "storage" ? "storage (through the shared region)" : "network"
    }`,
  );
  if (summary.fallbackReason !== null) console.log(`  fallback    ${summary.fallbackReason}`);
  console.log(
    `  bytes       storage ${number(summary.storageBytes)}, network ${
      number(summary.networkBytes)
    }`,
  );
  console.log(
    `  throughput  ${summary.megabytesPerSecond.toFixed(1)} MB/s in ${
      summary.seconds.toFixed(2)
    } s`,
  );
  console.log(`  repository  ${repo}`);
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseBackupArgs>;
  try {
    options = parseBackupArgs(Deno.args);
  } catch (error) {
    console.error(`backup: ${error instanceof Error ? error.message : String(error)} (see --help)`);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  await checkSource(options.source, options.mode);
  const progress = progressReporter(
    options.json ? "none" : Deno.stderr.isTerminal() ? "bar" : "lines",
  );
  let summary: BackupJobSummary;
  try {
    summary = await runBackupJob({ ...options, onProgress: progress.update });
  } finally {
    progress.stop();
  }
  const retention = options.keep === undefined
    ? undefined
    : await retain(summary, options.repo, options.keep);
  if (options.json) console.log(JSON.stringify({ ...summary, ...retention }));
  else {
    printSummary(summary, options.repo);
    if (retention?.retention !== undefined) {
      for (const line of retentionLines(retention.retention)) console.log(`  ${line}`);
    }
  }
  if (retention?.retentionError !== undefined) {
    console.error(
      `backup: snapshot ${summary.snapshot} was made, but retention failed: ${retention.retentionError}`,
    );
    return 1;
  }
  return summary.skipped.length > 0 ? EXIT_INCOMPLETE : 0;
}

/** Forget and prune after the backup; a failure is reported, never thrown. */
async function retain(
  summary: BackupJobSummary,
  repo: string,
  keep: { rules: KeepRules; timeZone: string },
): Promise<{ retention?: RetentionReport; retentionError?: string }> {
  try {
    const retention = await applyRetention({
      repo,
      ...keep,
      source: summary.source,
      kind: summary.mode,
    });
    return { retention };
  } catch (error) {
    return { retentionError: error instanceof Error ? error.message : String(error) };
  }
}

/** What retention removed, in the summary's words. */
function retentionLines(report: RetentionReport): string[] {
  const { forget, prune } = report;
  const count = (action: string) => prune.archives.filter((a) => a.action === action).length;
  return [
    `retention   kept ${forget.kept.length} snapshots of this source, forgot ${forget.removed.length}` +
    (forget.removed.length > 0 ? `: ${forget.removed.join(", ")}` : ""),
    `  prune     ${count("remove")} archives removed, ${count("repack")} repacked, ` +
    `${formatBytes(prune.bytesBefore - prune.bytesAfter)} freed`,
  ];
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(`backup: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
