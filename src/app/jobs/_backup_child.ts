/**
 * A backup in a child process, for crash drills: run with the backup task's permissions as
 * `_backup_child.ts SOURCE REPO STEP [--incremental]`. It runs a local backup; when the writer
 * reaches STEP (a `WriterStep`, or `none`) it prints `at STEP` and waits to be killed. A backup
 * that never reaches STEP prints `done SNAPSHOT` and exits 0.
 *
 * @module
 */

import { runLocalBackup } from "./local_backup.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";

async function main(args: string[]): Promise<void> {
  const [source, repo, stopAt, flag] = args;
  if (source === undefined || repo === undefined || stopAt === undefined) {
    throw new Error("usage: _backup_child.ts SOURCE REPO STEP [--incremental]");
  }
  const summary = await runLocalBackup({
    source,
    repo,
    incremental: flag === "--incremental",
    onWriterStep: async (step: WriterStep) => {
      if (step !== stopAt) return;
      console.log(`at ${step}`);
      // Held here until the parent kills this process (the timer keeps it alive).
      await new Promise(() => setInterval(() => {}, 1 << 30));
    },
  });
  console.log(`done ${summary.snapshot}`);
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`backup child: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
