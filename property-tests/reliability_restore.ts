/**
 * Restore-crash properties for the conformance `reliability` group: a restore that dies at a
 * random point (its k-th create) leaves no file under its real name that is not whole, and a
 * rerun with overwrite always ends with the complete tree. The disk side is a harness argument,
 * so the suite imports nothing from a runtime.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import {
  type BackupHarness,
  type NodeSpec,
  type SeenEntry,
  treeArbitrary,
} from "./backup_suite.ts";

/** What the restore-crash properties need besides the backup harness. */
export interface RestoreCrashHarness
  extends Pick<BackupHarness, "makeDir" | "removeDir" | "writeTree" | "describe" | "backup"> {
  /**
   * Restores `snapshot` into `target`; with `dieAtCreate` the restore dies (throws an untyped
   * error, as a crash would stop it) when it is about to create its entry number `dieAtCreate`.
   * Resolves with whether it died.
   */
  restore(
    repo: string,
    snapshot: string,
    target: string,
    options: { overwrite: boolean; dieAtCreate?: number },
  ): Promise<{ died: boolean }>;
}

/** Entries that are not a restore's own temporary files. */
function realEntries(entries: readonly SeenEntry[]): SeenEntry[] {
  return entries.filter((e) => !/(^|\/)\.lanfree-[0-9a-f]{16}\.partial$/.test(e.path));
}

async function withDirs<T>(
  harness: RestoreCrashHarness,
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await harness.makeDir();
  try {
    return await body(dir);
  } finally {
    await harness.removeDir(dir);
  }
}

async function crashThenRerun(harness: RestoreCrashHarness, nodes: NodeSpec[], dieAt: number) {
  return await withDirs(harness, async (dir) => {
    await harness.writeTree(`${dir}/src`, nodes);
    const { snapshot } = await harness.backup(`${dir}/src`, `${dir}/repo`, false);
    const source = await harness.describe(`${dir}/src`);
    const bySource = new Map(source.map((e) => [e.path, e]));
    const first = await harness.restore(`${dir}/repo`, snapshot, `${dir}/out`, {
      overwrite: false,
      dieAtCreate: dieAt,
    });
    // Whatever got its real name before the crash is whole.
    for (const seen of realEntries(await harness.describe(`${dir}/out`))) {
      if (seen.type !== "file") continue;
      const expected = bySource.get(seen.path);
      if (expected?.detail !== seen.detail) {
        throw new Error(`${seen.path} under its real name is not whole after the crash`);
      }
    }
    await harness.restore(`${dir}/repo`, snapshot, `${dir}/out`, { overwrite: true });
    const after = realEntries(await harness.describe(`${dir}/out`));
    if (JSON.stringify(after) !== JSON.stringify(source)) {
      throw new Error(`the rerun did not complete the tree (died: ${first.died})`);
    }
  });
}

/**
 * The restore-crash suite.
 *
 * @param harness the disk side and the implementation under test
 * @returns the suite
 */
export function restoreReliabilitySuite(harness: RestoreCrashHarness): Suite {
  return {
    name: "reliability (restore crashes)",
    properties: [
      defineProperty(
        "a restore that dies at any create leaves no cut-off file under a real name, and a rerun completes the tree",
        { numRuns: 8 },
        () =>
          fc.asyncProperty(
            treeArbitrary(),
            fc.integer({ min: 1, max: 25 }),
            (nodes, dieAt) => crashThenRerun(harness, nodes, dieAt),
          ),
      ),
    ],
  };
}
