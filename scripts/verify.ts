/**
 * `deno task verify`: re-reads snapshot archives and checks every file's size and SHA-256
 * against the manifests.
 *
 * @module
 */

import { verifyRepository } from "../src/app/repository/verify.ts";
import {
  consoleIo,
  EXIT_FAILED,
  type Io,
  parseCliArgs,
  REPO_SNAPSHOT_OPTIONS,
  reportFailure,
} from "../src/app/_cli_support.ts";

const USAGE = `usage: deno task verify --repo DIR [--snapshot ID|latest] [--json] [--help]

Checks every file of every snapshot (or of one snapshot, across its incremental chain) against
its manifest. Exits 1 and names the files when anything does not match.`;

const OPTIONS = REPO_SNAPSHOT_OPTIONS;

/**
 * Runs the CLI.
 *
 * @param args command-line arguments
 * @param io where to print
 * @returns the exit code: 0 all good, 1 problems or errors, 2 bad usage
 *
 * @example A missing --repo is a usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./verify.ts";
 * const lines: string[] = [];
 * const code = await main([], { out: (l) => lines.push(l), err: (l) => lines.push(l) });
 * assert.equal(code, 2);
 * assert.match(lines[0]!, /missing --repo/);
 * ```
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  const values = parseCliArgs(args, OPTIONS, USAGE, io, ["repo"]);
  if (typeof values === "number") return values;
  try {
    const report = await verifyRepository(values.repo!, values.snapshot);
    if (values.json) io.out(JSON.stringify(report));
    else {
      io.out(
        `checked ${report.snapshots.length} snapshots: ${report.files} files, ${report.bytes} bytes`,
      );
      for (const problem of report.problems) io.err(`problem: ${problem.message}`);
      io.out(report.ok ? "all hashes match" : `${report.problems.length} problems found`);
    }
    return report.ok ? 0 : EXIT_FAILED;
  } catch (error) {
    return reportFailure(error, io);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
