/**
 * `deno task serve [--port N] [--host H] [--root DIR]...`: the HTTP control endpoint on
 * `Deno.serve`. Bound to 127.0.0.1 unless told otherwise. The bearer token comes from
 * `LANFREE_TOKEN`, or is generated at start and printed once. Requests may only touch paths
 * inside the roots (default: the current directory).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createControlApp } from "../src/adapters/http.ts";
import { JobQueue } from "../src/app/jobs.ts";
import { createJobExecutor } from "../src/app/job_executor.ts";
import { jobRegionConfig } from "../src/app/backup_job.ts";
import { formatRegion } from "../src/core/stp/region.ts";
import { denoControlServices } from "../src/app/control_services.ts";
import { lanfreeSuites } from "./conformance.ts";

const USAGE = `usage: deno task serve [--port N] [--host H] [--root DIR]... [--region-mib N]

Serves lanfree's HTTP control endpoint (jobs, snapshots, storage, conformance, metrics).
Every route but GET /health needs "Authorization: Bearer <token>"; the token is LANFREE_TOKEN,
or one generated now and printed once.`;

function randomToken(): string {
  return [...crypto.getRandomValues(new Uint8Array(24))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8787" },
      host: { type: "string", default: "127.0.0.1" },
      root: { type: "string", multiple: true },
      "region-mib": { type: "string", default: "64" },
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
  const roots = await Promise.all((values.root ?? ["."]).map((root) => Deno.realPath(root)));
  const formatted = regionMib === 0
    ? undefined
    : formatRegion(jobRegionConfig(regionMib, 64, 10_000), crypto.randomUUID());
  if (formatted !== undefined && !formatted.ok) throw new Error(formatted.message);
  const region = formatted?.value ?? null;
  const given = Deno.env.get("LANFREE_TOKEN");
  if (given !== undefined && given.trim() === "") {
    throw new Error(
      "LANFREE_TOKEN is set but empty: set it to a secret, or unset it to have one generated",
    );
  }
  const token = given ?? randomToken();
  const jobs = new JobQueue(createJobExecutor({ region, roots }), () => Date.now());
  const app = createControlApp(
    denoControlServices({ token, roots, jobs, region, suites: lanfreeSuites }),
  );
  const server = Deno.serve({
    hostname: values.host,
    port,
    onListen: ({ hostname, port }) => {
      console.log(`lanfree serve: http://${hostname}:${port} (roots: ${roots.join(", ")})`);
      if (given === undefined) console.log(`token: ${token}`);
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
