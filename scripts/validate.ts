/**
 * `deno task validate --server URL --agent HOST:PORT [--json]`, as Spectrum Protect's
 * `VALIDATE LANFREE`: asks the server (`deno task serve`, the token from `LANFREE_TOKEN`) to
 * check every path to the agent: the file-system flow, the database flow and the network alone.
 * Each is set up as a backup would set it up, the agent key proven, and a test payload moved
 * through each channel. A path that does not work is printed with the seeds' step, the side and
 * the reason. Exit 0 only when every path works.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { consoleIo, EXIT_FAILED, EXIT_USAGE, type Io } from "../src/app/_cli_support.ts";
import { AgentAddressSchema } from "../src/app/jobs/jobs.ts";
import type { PathReport, ValidateReport } from "../src/app/server/validate.ts";
import { runRemoteJob, serverAddress } from "./_remote.ts";

const USAGE = `usage: deno task validate --server URL --agent HOST:PORT [--json]

Checks every path between the server and the agent: the file-system flow (storage), the
database flow (storage) and the network alone. For each it sets up the channels, proves the
agent key and moves a test payload through each channel (control, error, data). A path that
does not work is named with the step of the seeds' handshake and the reason: the agent attached
no region, a different region or STG, no free control block, STG ports exhausted, or the key
refused. --json prints the report as JSON. Exit 0 only when every path works; 1 otherwise;
2 for bad usage.`;

function line(path: PathReport): string {
  const name = { fs: "file-system flow", db: "database flow", network: "network alone" }[path.path];
  const channels = Object.entries(path.channels)
    .map(([channel, ok]) => `${channel} ${ok ? "ok" : "failed"}`).join(", ");
  if (path.works) {
    return `  ${name.padEnd(17)} works: ${channels}; ${path.storageBytes} bytes through storage, ` +
      `${path.networkBytes} over the network`;
  }
  const where = path.step === null
    ? ""
    : ` at step ${path.step}${path.side ? ` (${path.side})` : ""}`;
  const fallback = path.dataPath === "network"
    ? ` (the payloads went over the network: ${channels})`
    : "";
  return `  ${name.padEnd(17)} FAILS${where}: ${path.reason}${fallback}`;
}

/**
 * Runs the CLI.
 *
 * @param args command-line arguments
 * @param io where to print
 * @returns the exit code
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        server: { type: "string" },
        agent: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    io.err(`error: ${(error as Error).message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const agent = AgentAddressSchema.safeParse(values.agent);
  if (values.server === undefined || !agent.success) {
    io.err(`error: --server URL and --agent HOST:PORT are needed\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  try {
    const server = serverAddress(values.server, Deno.env.get("LANFREE_TOKEN"));
    const job = await runRemoteJob(server, { kind: "validate", agent: agent.data }, () => {});
    const report = job.result as ValidateReport | undefined;
    if (report === undefined) {
      io.err(`error: ${job.error ?? `the validation ended ${job.state}`}`);
      return EXIT_FAILED;
    }
    if (values.json) io.out(JSON.stringify(report));
    else {
      io.out(`lanfree validate: agent ${report.agent} ${report.ok ? "OK" : "NOT OK"}`);
      for (const path of report.paths) io.out(line(path));
    }
    return report.ok ? 0 : EXIT_FAILED;
  } catch (error) {
    io.err(`error: ${(error as Error).message}`);
    return EXIT_FAILED;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
