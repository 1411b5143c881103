/**
 * `deno task forget`: applies keep rules (restic's `--keep-*`) to a repository's snapshots, each
 * source and kind on its own, and removes the manifests of the snapshots no rule keeps. Their
 * archives stay until `deno task prune` (or `--prune`) removes what nothing references.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { forgetSnapshots } from "../src/app/repository/forget.ts";
import { localTimeZone } from "../src/app/repository/_maintenance.ts";
import { pruneRepository } from "../src/app/repository/prune.ts";
import { hasKeepRule } from "../src/core/backup/retention.ts";
import {
  forgetLines,
  KEEP_OPTIONS,
  KEEP_USAGE,
  keepRulesOf,
  pruneLines,
} from "../src/app/_retention_cli.ts";
import { consoleIo, type Io, reportFailure, reportUsage } from "../src/app/_cli_support.ts";

const USAGE = `usage: deno task forget --repo DIR [--keep-* ...] [--source DIR] [--time-zone ZONE]
                        [--dry-run] [--prune] [--json] [--help]

Keeps the snapshots the rules keep and forgets the others (removes their manifests), for each
source and kind on its own, as restic's forget does. It prints every snapshot with the rules
that keep it. Archives stay until prune removes what no kept snapshot references.

${KEEP_USAGE}
  --source DIR          only the snapshots of this source (the path it was backed up from)
  --dry-run             print what would be kept and removed; change nothing
  --prune               prune afterwards (see deno task prune)
  --json                print one JSON report on stdout

Without any --keep-* option nothing is removed (restic's rule for an empty policy).
Exit status: 0 done; 1 failed (nothing was removed); 2 bad usage.`;

const OPTIONS = {
  repo: { type: "string" },
  source: { type: "string" },
  "dry-run": { type: "boolean" },
  prune: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean" },
  ...KEEP_OPTIONS,
} as const;

/**
 * Runs the CLI.
 *
 * @param args command-line arguments
 * @param io where to print
 * @returns the exit code: 0 done, 1 failed, 2 bad usage
 *
 * @example A bad count is a usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./forget.ts";
 * const lines: string[] = [];
 * const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
 * assert.equal(await main(["--repo", "/r", "--keep-daily", "two"], io), 2);
 * assert.match(lines[0]!, /--keep-daily must be a count/);
 * ```
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let values;
  let keep;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
    if (values.help) {
      io.out(USAGE);
      return 0;
    }
    if (values.repo === undefined) throw new Error("missing --repo");
    keep = keepRulesOf(values, localTimeZone());
  } catch (error) {
    return reportUsage(error, USAGE, io);
  }
  if (!hasKeepRule(keep.rules)) io.err("no --keep-* rule given: no snapshot will be removed");
  try {
    const dryRun = values["dry-run"] ?? false;
    const forget = await forgetSnapshots({
      repo: values.repo,
      ...keep,
      source: values.source,
      dryRun,
    });
    const prune = values.prune ? await pruneRepository({ repo: values.repo, dryRun }) : undefined;
    if (values.json) io.out(JSON.stringify({ forget, prune }));
    else {
      for (const line of forgetLines(forget)) io.out(line);
      if (prune !== undefined) { for (const line of pruneLines(prune)) io.out(line); }
    }
    return 0;
  } catch (error) {
    return reportFailure(error, io);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
