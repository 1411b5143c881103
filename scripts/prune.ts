/**
 * `deno task prune`: removes the archives no kept snapshot references, and repacks the ones kept
 * snapshots read only in part into new archives of just the needed members.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { pruneRepository } from "../src/app/repository/prune.ts";
import { pruneLines } from "../src/app/_retention_cli.ts";
import { consoleIo, type Io, reportFailure, reportUsage } from "../src/app/_cli_support.ts";

const USAGE =
  `usage: deno task prune --repo DIR [--max-unused PERCENT] [--dry-run] [--json] [--help]

Removes the archives no kept snapshot references (after deno task forget), and repacks an
archive kept snapshots read only in part: a new archive of just the members they need (copied
byte for byte), their manifests pointed at it, then the old archive removed. Every step keeps
every kept snapshot restorable, even if prune is killed midway (run it again).

  --max-unused PERCENT  an archive with at most this share of unused bytes is kept whole
                        instead of repacked (default 5, as restic)
  --dry-run             print what would be removed and repacked; change nothing
  --json                print one JSON report on stdout

Exit status: 0 done; 1 failed; 2 bad usage.`;

const OPTIONS = {
  repo: { type: "string" },
  "max-unused": { type: "string" },
  "dry-run": { type: "boolean" },
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
 * @example A missing --repo is a usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./prune.ts";
 * const lines: string[] = [];
 * const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
 * assert.equal(await main([], io), 2);
 * assert.match(lines[0]!, /missing --repo/);
 * ```
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let values;
  let maxUnusedPercent: number | undefined;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    if (values.repo === undefined) throw new Error("missing --repo");
    const text = values["max-unused"]?.replace(/%$/, "");
    if (text !== undefined) {
      maxUnusedPercent = Number(text);
      if (text === "" || !(maxUnusedPercent >= 0 && maxUnusedPercent <= 100)) {
        throw new Error(
          `--max-unused must be a percent from 0 to 100, got "${values["max-unused"]}"`,
        );
      }
    }
  } catch (error) {
    return reportUsage(error, USAGE, io);
  }
  try {
    const report = await pruneRepository({
      repo: values.repo,
      dryRun: values["dry-run"] ?? false,
      maxUnusedPercent,
    });
    if (values.json) io.out(JSON.stringify(report));
    else for (const line of pruneLines(report)) io.out(line);
    return 0;
  } catch (error) {
    return reportFailure(error, io);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
