/**
 * `deno task consolidate`: makes an incremental snapshot stand alone (a synthetic full) from its
 * chain, without reading its source.
 *
 * @module
 */

import { consolidateSnapshot } from "../src/app/repository/consolidate.ts";
import { consolidateLines } from "../src/app/_retention_cli.ts";
import {
  consoleIo,
  type Io,
  parseCliArgs,
  REPO_SNAPSHOT_OPTIONS,
  reportFailure,
} from "../src/app/_cli_support.ts";

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

const OPTIONS = { ...REPO_SNAPSHOT_OPTIONS, source: { type: "string" } } as const;

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
  const values = parseCliArgs(args, OPTIONS, USAGE, io, ["repo", "snapshot"]);
  if (typeof values === "number") return values;
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
