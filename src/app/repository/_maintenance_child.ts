/**
 * Prune or consolidate in a child process, for crash drills: run with the task's permissions as
 * `_maintenance_child.ts prune|consolidate REPO STEP [SNAPSHOT]`. Prune repacks any archive
 * with an unused byte (so drills meet repacks). When the operation reaches STEP (one of its
 * drill steps, or `none`) it prints `at STEP` and waits to be killed; one that never reaches it
 * prints `done` and exits 0.
 *
 * @module
 */

import { consolidateSnapshot } from "./consolidate.ts";
import { pruneRepository } from "./prune.ts";

async function main(args: string[]): Promise<void> {
  const [operation, repo, stopAt, snapshot] = args;
  if (
    repo === undefined || stopAt === undefined || !["prune", "consolidate"].includes(operation!)
  ) {
    throw new Error("usage: _maintenance_child.ts prune|consolidate REPO STEP [SNAPSHOT]");
  }
  const onStep = async (step: string) => {
    if (step !== stopAt) return;
    console.log(`at ${step}`);
    // Held here until the parent kills this process (the timer keeps it alive).
    await new Promise(() => setInterval(() => {}, 1 << 30));
  };
  if (operation === "prune") await pruneRepository({ repo, maxUnusedPercent: 0, onStep });
  else await consolidateSnapshot({ repo, snapshot: snapshot ?? "latest", onStep });
  console.log("done");
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`maintenance child: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(1);
  }
}
