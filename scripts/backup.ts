/**
 * `deno task backup`: backs up a directory (or a SQLite database) into a repository. Embedded
 * (the default): the client and the server each run in their own Worker host on this machine;
 * they set up their channels with the seeds' handshakes over 127.0.0.1 and a shared storage
 * region, and file data travels through storage while control and errors stay on the network.
 * With `--server URL --agent HOST:PORT`, the job runs on that server (`deno task serve`) with
 * the client's part on that agent (`deno task agent`): `--source` is a path on the agent,
 * `--repo` a path on the server.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { z } from "zod";
import type { BackupJobOptions, BackupJobSummary } from "../src/app/jobs/backup_job.ts";
import type { BackupProgress } from "../src/app/hosts/peer_reports.ts";
import { type BackupJobRequest, BackupJobSchema } from "../src/app/jobs/jobs.ts";
import type { RetentionReport } from "../src/app/repository/retention.ts";
import {
  formatBytes,
  KEEP_OPTIONS,
  KEEP_USAGE,
  keepRulesOf,
  localTimeZone,
} from "../src/app/_retention_cli.ts";
import { hasKeepRule, type KeepRules } from "../src/core/backup/retention.ts";
import { prestartSideHosts } from "../src/app/jobs/side_host_start.ts";
import { workerHostsRunning } from "../src/adapters/host_link.ts";
import { progressReporter } from "./_progress.ts";

export { progressReporter, type ProgressText, progressText } from "./_progress.ts";

const USAGE = `usage: deno task backup [options] [--keep-* ...]
       deno task backup --server URL --agent HOST:PORT --source DIR --repo DIR [options]

Backs up --source (default: the sample tree in fixtures/sample) into --repo (default:
./.lanfree/repo). The client and the server run as two hosts on this machine: control and
errors go over TCP on 127.0.0.1, file data through the shared storage region.

With --server, the job runs on that server (deno task serve; the token is LANFREE_TOKEN) and
the client's part on the agent at --agent (deno task agent): --source (or --db) is a path on
the agent, --repo a path on the server. The progress and the summary are the same.

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
  --server URL          run the job on this server (with --agent)
  --agent HOST:PORT     the agent that does the client's part
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

/** What only the embedded run takes (the job itself is `BackupJobSchema`'s). */
const EmbeddedSchema = z.strictObject({
  regionMib: z.int({ error: "--region-mib must be an integer" }).min(0).max(1024, {
    error: "--region-mib must be at most 1024",
  }),
  controlBlocks: z.int({ error: "--control-blocks must be an integer" }).min(1).max(4096, {
    error: "--control-blocks must be between 1 and 4096",
  }),
});

/** The flag of a job option, for messages. */
function flagOf(path: readonly PropertyKey[]): string {
  const field = String(path[0] ?? "");
  return field === "" ? "" : `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} `;
}

/** The command line, parsed: the job (one schema for every front) and the CLI's own options. */
export interface BackupArgs {
  /** The job, validated by `BackupJobSchema`. */
  readonly request: BackupJobRequest;
  /** The server to run it on, or undefined for the embedded run. */
  readonly server?: string;
  readonly regionMib: number;
  readonly controlBlocks: number;
  readonly json: boolean;
  readonly help: boolean;
}

/** Parses the command line; throws UsageError with one clear line. */
export function parseBackupArgs(args: string[]): BackupArgs {
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
      server: { type: "string" },
      agent: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...KEEP_OPTIONS,
    },
    strict: true,
    allowPositionals: false,
  });
  const remote = values.server !== undefined;
  if (remote !== (values.agent !== undefined)) {
    throw new UsageError(
      remote ? "--server needs --agent HOST:PORT" : "--agent needs --server URL",
    );
  }
  if (remote && values.mode !== "db" && values.source === undefined) {
    throw new UsageError("--server needs --source DIR (a path on the agent)");
  }
  if (remote && values.repo === undefined) {
    throw new UsageError("--server needs --repo DIR (a path on the server)");
  }
  // Without a keep option there is no retention and no time zone to look up (the first use of
  // Intl's time zones costs about 60 ms of start-up).
  const keepGiven = Object.keys(KEEP_OPTIONS).some((name) =>
    values[name as keyof typeof values] !== undefined
  );
  let keep: { rules: KeepRules; timeZone: string } | undefined;
  try {
    keep = keepGiven ? keepRulesOf(values, localTimeZone()) : undefined;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const request = BackupJobSchema.safeParse({
    kind: "backup",
    agent: values.agent,
    source: values.mode === "db" && values.source === undefined
      ? undefined
      : values.source ?? new URL("../fixtures/sample", import.meta.url).pathname,
    repo: values.repo ?? ".lanfree/repo",
    mode: values.mode,
    db: values.db,
    incremental: values.incremental,
    channel: values.channel,
    ...(keep !== undefined && hasKeepRule(keep.rules)
      ? { keep: keep.rules, timeZone: keep.timeZone }
      : {}),
  });
  if (!request.success) {
    const issue = request.error.issues[0]!;
    throw new UsageError(`${flagOf(issue.path)}${issue.message}`);
  }
  const embedded = EmbeddedSchema.safeParse({
    regionMib: Number(values["region-mib"]),
    controlBlocks: Number(values["control-blocks"]),
  });
  if (!embedded.success) throw new UsageError(embedded.error.issues[0]!.message);
  return {
    request: request.data,
    ...(remote ? { server: values.server } : {}),
    ...embedded.data,
    json: values.json,
    help: values.help,
  };
}

/** A command-line mistake. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
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

/** The embedded run's options from the parsed command line. */
function embeddedOptions(args: BackupArgs): BackupJobOptions {
  return { ...args.request, regionMib: args.regionMib, controlBlocks: args.controlBlocks };
}

/** Runs the job here, its client and server in two Worker hosts (started ahead of it). */
async function runEmbedded(
  args: BackupArgs,
  onProgress: (progress: BackupProgress) => void,
): Promise<BackupJobSummary> {
  const { runBackupJob } = await import("../src/app/jobs/backup_job.ts");
  return await runBackupJob({ ...embeddedOptions(args), onProgress });
}

/** Runs the job on a server; its summary, or the server's account of the failure. */
async function runOnServer(
  args: BackupArgs,
  onProgress: (progress: BackupProgress) => void,
): Promise<BackupJobSummary> {
  const { runRemoteJob, serverAddress } = await import("./_remote.ts");
  const server = serverAddress(args.server!, Deno.env.get("LANFREE_TOKEN"));
  const job = await runRemoteJob(server, { ...args.request }, onProgress);
  if (job.state !== "succeeded") throw new Error(job.error ?? `the job ended ${job.state}`);
  return job.result as BackupJobSummary;
}

async function main(): Promise<number> {
  let args: BackupArgs;
  try {
    args = parseBackupArgs(Deno.args);
  } catch (error) {
    console.error(`backup: ${error instanceof Error ? error.message : String(error)} (see --help)`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const { request } = args;
  if (args.server === undefined) {
    const source = request.mode === "db" ? request.db! : request.source!;
    // The hosts load their modules while this isolate loads the job's and checks the source
    // (not for a source that is not there: that fails below, with no host to wait for).
    if (await Deno.stat(source).then(() => true, () => false)) prestartSideHosts();
    const { checkSource, sourceIdentity } = await import("../src/app/agent/snapshot_source.ts");
    await sourceIdentity(source); // "source ... does not exist", before anything is written
    await checkSource(source, request.mode);
  }
  const progress = progressReporter(
    args.json ? "none" : Deno.stderr.isTerminal() ? "bar" : "lines",
  );
  let summary: BackupJobSummary;
  try {
    summary = args.server === undefined
      ? await runEmbedded(args, progress.update)
      : await runOnServer(args, progress.update);
  } finally {
    progress.stop();
  }
  const retention = request.keep === undefined
    ? undefined
    : args.server === undefined
    ? await retain(summary, request.repo, {
      rules: request.keep,
      timeZone: request.timeZone ?? localTimeZone(),
    })
    : { retention: (summary as { retention?: RetentionReport }).retention };
  if (args.json) console.log(JSON.stringify({ ...summary, ...retention }));
  else {
    printSummary(summary, request.repo);
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
    const { applyRetention } = await import("../src/app/repository/retention.ts");
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

/** How long the process may take to end on its own once the CLI is done, ms (a bound). */
const END_GRACE_MS = 5_000;
/** The most `LANFREE_END_WAIT_MS` may ask for, ms. */
const END_WAIT_MS_MAX = 60_000;

/**
 * `LANFREE_END_WAIT_MS`: how long to stay after the job's Worker hosts ended, ms (0 unset). A
 * terminated Worker writes its `--cpu-prof` profile on its own thread, which the process's end
 * does not wait for; on a loaded machine a profile can be lost without a wait.
 */
function endWaitMs(): number {
  const text = Deno.env.get("LANFREE_END_WAIT_MS");
  if (text === undefined) return 0;
  const waitMs = Number(text);
  if (Number.isSafeInteger(waitMs) && waitMs >= 0 && waitMs <= END_WAIT_MS_MAX) return waitMs;
  console.error(
    `backup: LANFREE_END_WAIT_MS must be 0..${END_WAIT_MS_MAX}, got "${text}"; ignored`,
  );
  return 0;
}

/**
 * Ends the CLI with `code`. When every Worker host has ended (a job ends its hosts), the process
 * ends on its own, so that every isolate ends whole and `deno run --cpu-prof` writes the
 * Workers' profiles too (`Deno.exit` drops them); `LANFREE_END_WAIT_MS` keeps it that much
 * longer, for the Workers' threads to finish writing. Hosts still running (a job that failed
 * before it took the hosts started ahead), or anything that keeps the process past the wait and
 * `END_GRACE_MS`, end it with `Deno.exit`, as before. The exit code is the same either way.
 *
 * @param code the exit code
 */
function end(code: number): void {
  Deno.exitCode = code;
  if (workerHostsRunning() > 0) Deno.exit(code);
  const waitMs = endWaitMs();
  if (waitMs > 0) setTimeout(() => {}, waitMs);
  Deno.unrefTimer(setTimeout(() => Deno.exit(code), waitMs + END_GRACE_MS));
}

if (import.meta.main) {
  try {
    end(await main());
  } catch (error) {
    console.error(`backup: ${error instanceof Error ? error.message : String(error)}`);
    end(1);
  }
}
