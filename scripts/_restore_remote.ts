/**
 * `deno task restore --server URL --agent HOST:PORT`: the restore as a job of a server, written
 * by an agent. Apart from `restore.ts` so a local restore does not load the remote client.
 *
 * @module
 */

import { EXIT_FAILED, EXIT_USAGE, type Io, reportFailure } from "../src/app/_cli_support.ts";
import { RestoreJobSchema } from "../src/app/jobs/jobs.ts";
import type { RestoreJobSummary } from "../src/app/jobs/agent_job.ts";
import { runRemoteJob, serverAddress } from "./_remote.ts";
import { progressReporter } from "./_progress.ts";
import type { OPTIONS } from "./restore.ts";

/** The restore as a job of a server, written by an agent. */
export async function restoreOnServer(
  values: { readonly [K in keyof typeof OPTIONS]?: string | boolean },
  usage: string,
  io: Io,
): Promise<number> {
  const request = RestoreJobSchema.safeParse({
    kind: "restore",
    agent: values.agent,
    repo: values.repo,
    snapshot: values.snapshot,
    source: values.source,
    target: values.target,
    path: values.path,
    overwrite: values.overwrite ?? false,
    preservePermissions: (values["same-permissions"] ?? false) || (values.preserve ?? false),
    mode: values.mode ?? "fs",
    channel: values.channel ?? "auto",
  });
  if (!request.success) {
    const issue = request.error.issues[0]!;
    io.err(`error: --${String(issue.path[0] ?? "")} ${issue.message}\n\n${usage}`);
    return EXIT_USAGE;
  }
  const progress = progressReporter(
    values.json ? "none" : Deno.stderr.isTerminal() ? "bar" : "lines",
    "restore",
  );
  try {
    const server = serverAddress(values.server as string, Deno.env.get("LANFREE_TOKEN"));
    const job = await runRemoteJob(server, { ...request.data }, progress.update).finally(() =>
      progress.stop()
    );
    const summary = job.result as RestoreJobSummary | undefined;
    if (summary !== undefined && values.json) io.out(JSON.stringify(summary));
    else if (summary !== undefined) printRemoteSummary(summary, io);
    for (const problem of summary?.problems ?? []) {
      io.err(`not restored (${problem.side}): ${problem.message}`);
    }
    if (job.state === "succeeded") return 0;
    io.err(`error: ${job.error ?? `the job ended ${job.state}`}`);
    return EXIT_FAILED;
  } catch (error) {
    return reportFailure(error, io);
  }
}

function printRemoteSummary(summary: RestoreJobSummary, io: Io): void {
  const number = (n: number) => n.toLocaleString("en-US");
  io.out(`restored snapshot ${summary.snapshot} into ${summary.target} on ${summary.agent}`);
  io.out(`${summary.files} files, ${summary.dirs} directories, ${summary.symlinks} symlinks`);
  io.out(
    `${summary.bytes} bytes in ${summary.seconds.toFixed(2)} s (${
      summary.megabytesPerSecond.toFixed(0)
    } MB/s), every SHA-256 checked`,
  );
  io.out(
    `data path ${
      summary.dataPath === "storage" ? "storage (through the shared region)" : "network"
    }`,
  );
  if (summary.fallbackReason !== null) io.out(`fallback ${summary.fallbackReason}`);
  io.out(
    `bytes storage ${number(summary.storageBytes)}, network ${number(summary.networkBytes)}`,
  );
}
