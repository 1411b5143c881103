/**
 * `deno task agent --listen HOST:PORT [--region FILE] --root DIR [--root DIR ...]`: the agent on
 * the data host. It listens on its well-known port (`PORT`) for servers' jobs, backs up what
 * they ask under its roots and restores into them, moving the data through the region file it
 * shares with the server when it can. The agent key comes from `--key-file` or
 * `LANFREE_AGENT_KEY`; without one it refuses to start unless `--insecure-no-key`. SIGINT or
 * SIGTERM stops it: running jobs fail with the reason, its region blocks and host slot are
 * released. `--json` prints each event as a JSON line on stdout (a process host's messages).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { hostSide } from "../src/adapters/host_link.ts";
import { type AgentEvent, runAgent } from "../src/app/agent/agent.ts";
import { AGENT_KEY_ENV, loadAgentKey } from "../src/app/hosts/agent_key.ts";
import { AgentAddressSchema } from "../src/app/jobs/jobs.ts";
import { parseAgentAddress } from "../src/app/jobs/agent_job.ts";
import { errorText } from "../src/app/hosts/peer_reports.ts";

const USAGE = `usage: deno task agent --listen HOST:PORT --root DIR [--root DIR ...] [options]

Runs the agent: the client role on the host that owns the data. Servers (deno task serve) send
it jobs on its well-known port PORT; it reads and writes only under its --root directories.

  --listen HOST:PORT   the address and well-known port to listen on
  --root DIR           a directory jobs may read (backup) or write (restore) under; repeatable
  --region FILE        the region file the server maps too (deno task region create); without
                       one, data goes over the network and the summaries say why
  --key-file FILE      the agent key (else LANFREE_AGENT_KEY); servers must know the same key
  --insecure-no-key    run without a key: anyone who reaches PORT may read and write the roots
  --jobs N             most jobs at once (default 8)
  --json               print every event as a JSON line on stdout
  --help               this text

Exit status: 0 after SIGINT/SIGTERM, 1 when it cannot start or listen, 2 for bad usage.`;

const INSECURE_WARNING = `
**********************************************************************
* WARNING: lanfree agent started with --insecure-no-key.             *
* Anyone who can reach its port can back up and overwrite its roots. *
* Set LANFREE_AGENT_KEY (or --key-file) on the agent and the server. *
**********************************************************************`;

/** A command-line mistake. */
class UsageError extends Error {}

async function options(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      listen: { type: "string" },
      root: { type: "string", multiple: true },
      region: { type: "string" },
      "key-file": { type: "string" },
      "insecure-no-key": { type: "boolean", default: false },
      jobs: { type: "string", default: "8" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return { help: true as const };
  const listen = AgentAddressSchema.safeParse(values.listen);
  if (!listen.success) {
    throw new UsageError(
      `--listen ${values.listen ?? "(missing)"} ${listen.error.issues[0]!.message}`,
    );
  }
  if ((values.root ?? []).length === 0) throw new UsageError("--root DIR is needed (at least one)");
  const jobsMax = Number(values.jobs);
  if (!Number.isInteger(jobsMax) || jobsMax < 1 || jobsMax > 64) {
    throw new UsageError(`--jobs must be 1..64, got ${values.jobs}`);
  }
  const key = await loadAgentKey({
    envValue: Deno.env.get(AGENT_KEY_ENV),
    keyFile: values["key-file"],
  });
  if (key === null && !values["insecure-no-key"]) {
    throw new UsageError(
      `no agent key: set ${AGENT_KEY_ENV} or --key-file FILE (the server needs the same key), ` +
        "or run with --insecure-no-key",
    );
  }
  const roots = await Promise.all(values.root!.map(async (root) => {
    const info = await Deno.stat(root).catch(() => undefined);
    if (!info?.isDirectory) throw new UsageError(`--root ${root} is not a directory`);
    return await Deno.realPath(root);
  }));
  return {
    help: false as const,
    listen: parseAgentAddress(listen.data),
    roots,
    regionPath: values.region,
    key,
    jobsMax,
    json: values.json,
  };
}

function describe(event: AgentEvent): string | undefined {
  switch (event.type) {
    case "listening":
      return `lanfree agent: listening on ${event.host}:${event.port} (WKP; file-system flows on ` +
        `ports of each job)${
          event.region === null ? ", no region" : `, region ${event.region} (${event.regionId})`
        }`;
    case "job-started":
      return `job ${event.job}: ${event.kind}${event.path === null ? "" : ` ${event.path}`}`;
    case "job-done":
      return `job ${event.job}: ${event.kind} done`;
    case "job-failed":
    case "job-refused":
      return `job ${event.job}: ${
        event.type === "job-refused" ? "refused" : "failed"
      }: ${event.reason}`;
    case "listen-failed":
      return `a server's handshake failed: ${event.reason}`;
    case "stopping":
      return `lanfree agent: stopping (${event.reason})`;
    case "stopped":
      return "lanfree agent: stopped; region blocks and host slot released";
    case "job-progress":
      return undefined;
  }
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = await options(Deno.args);
  } catch (error) {
    console.error(`agent: ${errorText(error)} (see --help)`);
    return error instanceof UsageError || (error as Error).name === "TypeError" ? 2 : 1;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.key === null) console.error(INSECURE_WARNING);
  const json = parsed.json ? hostSide<{ type: "none" }, AgentEvent>() : undefined;
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.abort(new Error(`agent stopping: ${signal}`)));
  }
  try {
    await runAgent({
      ...parsed,
      signal: stop.signal,
      onEvent: (event) => {
        json?.post(event);
        const line = describe(event);
        if (line !== undefined) console.error(line);
      },
    });
    return 0;
  } catch (error) {
    console.error(`agent: ${errorText(error)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
