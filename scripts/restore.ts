/**
 * `deno task restore`: restores a snapshot (applying its incremental chain) into a target
 * directory, checking every file's SHA-256. With `--server URL --agent HOST:PORT` the restore is
 * a job of that server: the snapshot streams from the server's repository through the data
 * channel (storage when it can) to the agent, which writes `--target` there with the same
 * checks.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { IncompleteRestore, restoreSnapshot } from "../src/app/repository/restore.ts";
import { openRepository, resolveSnapshotHead } from "../src/app/repository/repository.ts";
import { targetInsideSourceWarning } from "../src/app/paths.ts";
import {
  consoleIo,
  EXIT_USAGE,
  type Io,
  reportFailure,
  reportUsage,
} from "../src/app/_cli_support.ts";

const USAGE = `usage: deno task restore --repo DIR --snapshot ID|latest --target DIR
                         [--source DIR] [--path SUBPATH] [--overwrite] [--same-permissions]
                         [--json] [--help]
       deno task restore --server URL --agent HOST:PORT --repo DIR --snapshot ID|latest
                         --target DIR [--mode fs|db] [--channel auto|storage|network] ...

With --server, the restore is a job of that server (deno task serve; the token is LANFREE_TOKEN):
--repo is a path on the server, --target a path on the agent (deno task agent), and the snapshot
travels through the data channel of --mode's handshake (storage when it can; --channel as for
backup). The summary gives the bytes that went through each channel.

Restores snapshot ID (or the latest) from repository DIR into the target directory (created if
missing; a non-empty target is refused unless --overwrite). --path restores one file or subtree.
"latest" is the newest snapshot of --source DIR (the path it was backed up from; it need not
exist any more), or without --source the newest snapshot of any source in the repository.
A target inside the snapshot's source is restored with a warning.

Every file is written under a temporary name and gets its real name only once its size and
SHA-256 match the manifest. A file that cannot be restored (a damaged archive member, a full
disk) is reported with its path and whether the repository or the target is at fault; every
other file is restored.

  --same-permissions, --preserve
                 also restore setuid, setgid and sticky bits (as GNU tar -p); without it only
                 the rwx bits are restored, as GNU tar does without -p
  Owners (user and group, by name when the name exists here, else by id) are restored when
  running as root, as tar does.

Exit status: 0 everything restored; 1 nothing or not everything restored (each entry that was
not is listed); 2 bad usage.`;

/** The command line's options. */
export const OPTIONS = {
  repo: { type: "string" },
  snapshot: { type: "string" },
  source: { type: "string" },
  target: { type: "string" },
  path: { type: "string" },
  overwrite: { type: "boolean" },
  "same-permissions": { type: "boolean" },
  preserve: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean" },
  server: { type: "string" },
  agent: { type: "string" },
  mode: { type: "string" },
  channel: { type: "string" },
} as const;

/**
 * Runs the CLI.
 *
 * @param args command-line arguments
 * @param io where to print
 * @returns the exit code
 *
 * @example Printing the usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./restore.ts";
 * const lines: string[] = [];
 * const code = await main(["--help"], { out: (l) => lines.push(l), err: (l) => lines.push(l) });
 * assert.equal(code, 0);
 * assert.match(lines[0]!, /usage/);
 * ```
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  let values;
  try {
    values = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    return reportUsage(error, USAGE, io);
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const missing = (["repo", "snapshot", "target"] as const).filter((k) => values[k] === undefined);
  if (missing.length > 0) {
    io.err(`error: missing ${missing.map((k) => `--${k}`).join(", ")}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if ((values.server === undefined) !== (values.agent === undefined)) {
    io.err(`error: --server and --agent go together\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (values.server !== undefined) {
    // Loaded only here: a local restore needs none of the remote client.
    const { restoreOnServer } = await import("./_restore_remote.ts");
    return await restoreOnServer(values, USAGE, io);
  }
  try {
    const repo = await openRepository(values.repo!);
    const manifest = await resolveSnapshotHead(repo, values.snapshot!, values.source);
    const warning = await targetInsideSourceWarning(manifest.source, values.target!);
    if (warning !== undefined) io.err(`warning: ${warning}`);
    const summary = await restoreSnapshot({
      repo,
      snapshot: manifest.id,
      target: values.target!,
      path: values.path,
      overwrite: values.overwrite ?? false,
      preservePermissions: (values["same-permissions"] ?? false) || (values.preserve ?? false),
    });
    if (values.json) io.out(JSON.stringify({ ...summary, warnings: warning ? [warning] : [] }));
    else {
      if (summary.staleRemoved > 0) {
        io.out(
          `removed ${summary.staleRemoved} stale temporary files (.lanfree-*.partial) an ` +
            "interrupted restore left in the target",
        );
      }
      const mbPerSecond = summary.bytes / 1e6 / Math.max(summary.seconds, 1e-6);
      io.out(`restored snapshot ${summary.snapshot} into ${values.target}`);
      io.out(`${summary.files} files, ${summary.dirs} directories, ${summary.symlinks} symlinks`);
      io.out(
        `${summary.bytes} bytes in ${summary.seconds.toFixed(2)} s (${
          mbPerSecond.toFixed(0)
        } MB/s), every SHA-256 checked`,
      );
    }
    return 0;
  } catch (error) {
    if (error instanceof IncompleteRestore) {
      if (values.json) io.out(JSON.stringify({ ...error.summary, ok: false }));
      for (const problem of error.summary.problems) {
        io.err(`not restored (${problem.side}): ${problem.message}`);
      }
    }
    return reportFailure(error, io);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
