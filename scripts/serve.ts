/**
 * `deno task serve [--port N] [--host H] [--root DIR]... [--region FILE]`: the server role, with
 * the HTTP control endpoint on `Deno.serve`. Bound to 127.0.0.1 unless told otherwise. The
 * bearer token comes from `LANFREE_TOKEN`, or is generated at start and printed once. Requests
 * may only touch paths of this machine inside the roots (default: the current directory).
 * Jobs with an `agent` run their client part on that agent (`deno task agent`); the agent key
 * comes from `LANFREE_AGENT_KEY` (or `--key-file`), the region file both map from `--region`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createControlApp } from "../src/adapters/http.ts";
import { JobQueue } from "../src/app/jobs/jobs.ts";
import { createJobExecutor } from "../src/app/jobs/job_executor.ts";
import { jobRegionConfig } from "../src/app/jobs/backup_job.ts";
import { formatRegion } from "../src/core/stp/region.ts";
import { denoControlServices } from "../src/app/server/control_services.ts";
import { openRegionFile, type RegionFile } from "../src/adapters/region_file.ts";
import { AGENT_KEY_ENV, loadAgentKeyBytes } from "../src/app/hosts/agent_key.ts";
import { lanfreeSuites } from "./conformance.ts";
import { DASHBOARD_SCRIPT_PATH } from "./build_dashboard.ts";

const USAGE =
  `usage: deno task serve [--port N] [--host H] [--root DIR]... [--region FILE | --region-mib N]
                       [--key-file FILE | --insecure-no-key] [--jobs N]

Serves lanfree's HTTP control endpoint (jobs, snapshots, storage, conformance, metrics) and
the dashboard at / (log in there with the token). Every API route needs
"Authorization: Bearer <token>" or the dashboard's session; the token is LANFREE_TOKEN, or one
generated now and printed once.

  --region FILE      map this region file (deno task region create); agents that map the same
                     file move data through it. Without it, a region of --region-mib MiB in
                     this process's memory (default 64; 0: none), which no agent can share.
  --key-file FILE    the agent key (else LANFREE_AGENT_KEY); without one, jobs with an agent
                     are refused, unless --insecure-no-key (only keyless agents then pass)
  --jobs N           most jobs running at once (default 4)`;

function randomToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(24))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The bundled dashboard script (`deno task dashboard`), or undefined, said loudly, without. */
async function readDashboardScript(): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(DASHBOARD_SCRIPT_PATH);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    console.error(
      `serve: no dashboard script at ${DASHBOARD_SCRIPT_PATH} (run deno task dashboard): ` +
        "the page at / will not load its script",
    );
    return undefined;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8787" },
      host: { type: "string", default: "127.0.0.1" },
      root: { type: "string", multiple: true },
      "region-mib": { type: "string", default: "64" },
      region: { type: "string" },
      "key-file": { type: "string" },
      "insecure-no-key": { type: "boolean", default: false },
      jobs: { type: "string", default: "4" },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be 0..65535, got ${values.port}`);
  }
  const regionMib = Number(values["region-mib"]);
  if (!Number.isInteger(regionMib) || regionMib < 0 || regionMib > 1024) {
    throw new Error(`--region-mib must be 0..1024, got ${values["region-mib"]}`);
  }
  const runningMax = Number(values.jobs);
  if (!Number.isInteger(runningMax) || runningMax < 1 || runningMax > 64) {
    throw new Error(`--jobs must be 1..64, got ${values.jobs}`);
  }
  const roots = await Promise.all((values.root ?? ["."]).map((root) => Deno.realPath(root)));
  const file: RegionFile | undefined = values.region === undefined
    ? undefined
    : openRegionFile(values.region);
  const formatted = regionMib === 0 || file !== undefined
    ? undefined
    : formatRegion(jobRegionConfig(regionMib, 64, 10_000), crypto.randomUUID());
  if (formatted !== undefined && !formatted.ok) throw new Error(formatted.message);
  const region = file ?? formatted?.value ?? null;
  const keyBytes = await loadAgentKeyBytes({
    envValue: Deno.env.get(AGENT_KEY_ENV),
    keyFile: values["key-file"],
  });
  const agentKey = keyBytes ?? (values["insecure-no-key"] ? null : undefined);
  const given = Deno.env.get("LANFREE_TOKEN");
  if (given !== undefined && given.trim() === "") {
    throw new Error(
      "LANFREE_TOKEN is set but empty: set it to a secret, or unset it to have one generated",
    );
  }
  const token = given ?? randomToken();
  const jobs = new JobQueue(
    createJobExecutor({ region: values.region ?? formatted?.value ?? null, roots, agentKey }),
    () => Date.now(),
    { runningMax },
  );
  const dashboardScript = await readDashboardScript();
  const app = createControlApp(
    denoControlServices({ token, roots, jobs, region, suites: lanfreeSuites, dashboardScript }),
  );
  const server = Deno.serve({
    hostname: values.host,
    port,
    onListen: ({ hostname, port }) => {
      console.log(`lanfree serve: http://${hostname}:${port} (roots: ${roots.join(", ")})`);
      if (given === undefined) console.log(`token: ${token}`);
      if (file !== undefined) console.log(`region: ${file.path} (${file.layout.regionId})`);
      if (agentKey === undefined) {
        console.log(`no agent key (${AGENT_KEY_ENV}): jobs with an agent will be refused`);
      } else if (agentKey === null) {
        console.log("WARNING: --insecure-no-key: agents are not proven");
      }
    },
  }, app.fetch);
  await server.finished;
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(`serve: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
