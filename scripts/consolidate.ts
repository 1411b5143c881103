/**
 * `deno task consolidate`: makes an incremental snapshot stand alone (a synthetic full) from its
 * chain, without reading its source.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { consolidateSnapshot } from "../src/app/repository/consolidate.ts";
import { consolidateLines } from "../src/app/_retention_cli.ts";
import { consoleIo, type Io, reportFailure, reportUsage } from "../src/app/_cli_support.ts";

const USAGE = `usage: deno task consolidate --repo DIR --snapshot ID|latest [--source DIR] [--json]
                             [--help]

Makes an incremental snapshot stand alone (a synthetic full), from the archives of its chain and
never from its source: its archive grows into a full one (GNU tar extracts it alone), its files
all point into it, and its parent becomes none (the manifest records the former one). Snapshots
that read from it are unchanged. Afterwards forget and prune may remove its former chain.

  --snapshot ID|latest  the snapshot ("latest": the newest, of --source when given)
  --source DIR          with latest: the newest snapshot of this source
  --json                print one JSON report on stdout

Exit status: 0 done (or it already stood alone); 1 failed (the snapshot is as it was);
2 bad usage.`;

const OPTIONS = {
  repo: { type: "string" },
  snapshot: { type: "string" },
  source: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean" },
} as const;

/**
 * Runs the CLI.
 *
 * @param args command-line arguments
 * @param io where to print
 * @returns the exit code: 0 done, 1 failed, 2 bad usage
 *
 * @example A missing --snapshot is a usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./consolidate.ts";
 * const lines: string[] = [];
 * const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
 * assert.equal(await main(["--repo", "/r"], io), 2);
 * assert.match(lines[0]!, /missing --snapshot/);
 * ```
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let values;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    const missing = (["repo", "snapshot"] as const).filter((k) => values![k] === undefined);
    if (missing.length > 0) throw new Error(`missing ${missing.map((k) => `--${k}`).join(", ")}`);
  } catch (error) {
    return reportUsage(error, USAGE, io);
  }
  try {
    const report = await consolidateSnapshot({
      repo: values.repo!,
      snapshot: values.snapshot!,
      source: values.source,
    });
    if (values.json) io.out(JSON.stringify(report));
    else for (const line of consolidateLines(report)) io.out(line);
    return 0;
  } catch (error) {
    return reportFailure(error, io);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
