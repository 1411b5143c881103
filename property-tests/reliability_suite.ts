/**
 * Repository-level reliability: whatever moment a backup dies at, the repository stays valid
 * and the next backup goes on. Properties are in one list, each a crash drill against a
 * {@link ReliabilityHarness} (the disk, the processes and the product under test), so the suite
 * imports nothing from a runtime and later drills (a restore killed midway, say) add a harness
 * method and a property here.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite, type SuiteProperty } from "./_suite.ts";
import {
  changeArbitrary,
  type ChangeSpec,
  equalTrees,
  inDir,
  type NodeSpec,
  type SeenEntry,
  treeArbitrary,
} from "./backup_suite.ts";

/** The steps of the writer's commit protocol a drill can stop a backup at (`WriterStep`). */
export const WRITER_STEPS = [
  "locked",
  "cleaned",
  "archive-bytes",
  "manifest-written",
  "archive-placed",
  "committed",
  "released",
] as const;

/** Where a backup process is killed: at a writer step, or after a delay from its start. */
export type CrashPoint =
  | { readonly kind: "step"; readonly step: typeof WRITER_STEPS[number] }
  | { readonly kind: "delay"; readonly delayMs: number };

/** The steps of prune and consolidate a drill can stop them at (`PruneStep`, `ConsolidateStep`). */
export const MAINTENANCE_STEPS = {
  prune: [
    "locked",
    "cleaned",
    "archive-written",
    "manifest-rewritten",
    "archive-removed",
    "released",
  ],
  consolidate: [
    "locked",
    "cleaned",
    "archive-written",
    "manifest-written",
    "archive-placed",
    "committed",
    "released",
  ],
} as const;

/** A repository operation a drill kills: prune (repacking) or consolidate. */
export type MaintenanceOperation = keyof typeof MAINTENANCE_STEPS;

/** Where a prune or consolidate process is killed: at one of its steps, or after a delay. */
export type MaintenanceCrash =
  | { readonly kind: "step"; readonly step: string }
  | { readonly kind: "delay"; readonly delayMs: number };

/** The implementation under test and the disk and process operations the suite needs. */
export interface ReliabilityHarness {
  makeDir(): Promise<string>;
  removeDir(path: string): Promise<void>;
  /** Creates the nodes under `root`, with modes and mtimes. */
  writeTree(root: string, nodes: readonly NodeSpec[]): Promise<void>;
  describe(root: string): Promise<SeenEntry[]>;
  /** A backup in this process (the rerun after a crash); it must not wait long for a lock. */
  backup(source: string, repo: string, incremental: boolean): Promise<{ snapshot: string }>;
  /**
   * A backup in a separate process, killed with SIGKILL at `crash`.
   *
   * @returns whether it was killed or ended on its own first
   */
  crashBackup(
    source: string,
    repo: string,
    incremental: boolean,
    crash: CrashPoint,
  ): Promise<"killed" | "completed">;
  /** Problems verify finds in every snapshot (none for a valid repository). */
  verify(repo: string): Promise<string[]>;
  /** Ids of the committed snapshots. */
  snapshots(repo: string): Promise<string[]>;
  restore(repo: string, snapshot: string, target: string): Promise<void>;
  /**
   * What an interrupted writer left: a lock file, files in `tmp/`, archives that have no
   * manifest and that no manifest references.
   */
  leftovers(repo: string): Promise<string[]>;
  /** Applies one change to the tree under `root`. */
  applyChange(root: string, change: ChangeSpec): Promise<void>;
  /** Forgets every snapshot but the newest of each source (in this process). */
  forgetAllButLatest(repo: string): Promise<void>;
  /** Prune (repacking any archive with an unused byte) or consolidate the newest snapshot. */
  maintain(operation: MaintenanceOperation, repo: string): Promise<void>;
  /**
   * The same in a separate process, killed with SIGKILL at `crash`.
   *
   * @returns whether it was killed or ended on its own first
   */
  crashMaintenance(
    operation: MaintenanceOperation,
    repo: string,
    crash: MaintenanceCrash,
  ): Promise<"killed" | "completed">;
}

/** Crash points: every writer step, and random moments from the process's start. */
export function crashPointArbitrary(): fc.Arbitrary<CrashPoint> {
  return fc.oneof(
    fc.constantFrom(...WRITER_STEPS).map((step) => ({ kind: "step" as const, step })),
    fc.integer({ min: 0, max: 1500 }).map((delayMs) => ({ kind: "delay" as const, delayMs })),
  );
}

/** Small random trees: the drills are about crash points, not file sizes. */
function smallTreeArbitrary(): fc.Arbitrary<NodeSpec[]> {
  return treeArbitrary().map((nodes) =>
    nodes.map((node) => ({ ...node, sizeBytes: Math.min(node.sizeBytes, 70_000) }))
  );
}

/** A killed backup then a rerun: the repository is valid and every snapshot restores. */
function crashThenRerun(harness: ReliabilityHarness): SuiteProperty {
  return defineProperty(
    "a backup killed with SIGKILL at a random step or moment, then a rerun, leaves a valid repository whose every snapshot restores",
    { numRuns: 20 },
    () =>
      fc.asyncProperty(
        smallTreeArbitrary(),
        crashPointArbitrary(),
        fc.boolean(),
        fc.boolean(),
        (nodes, crash, withParent, incremental) =>
          inDir(harness, async (dir) => {
            const [source, repo] = [`${dir}/src`, `${dir}/repo`];
            await harness.writeTree(source, nodes);
            if (withParent) await harness.backup(source, repo, false);
            await harness.crashBackup(source, repo, incremental, crash);
            await harness.backup(source, repo, incremental);
            await expectValid(harness, dir, await harness.describe(source));
          }),
      ),
  );
}

function maintenanceCrashArbitrary(
  operation: MaintenanceOperation,
): fc.Arbitrary<MaintenanceCrash> {
  return fc.oneof(
    fc.constantFrom(...MAINTENANCE_STEPS[operation]).map((step) => ({
      kind: "step" as const,
      step,
    })),
    fc.integer({ min: 0, max: 1500 }).map((delayMs) => ({ kind: "delay" as const, delayMs })),
  );
}

/**
 * Three snapshots of a changing tree, all but the newest forgotten (so prune repacks what it
 * still reads, and consolidate reads forgotten archives), then a prune or a consolidate of the
 * newest killed at a random step or moment, then a rerun (and, after a consolidate, a prune of
 * the chain it no longer reads): the repository is valid and the kept snapshot restores to the
 * tree it was taken from.
 */
function maintenanceCrashThenRerun(
  harness: ReliabilityHarness,
  operation: MaintenanceOperation,
): SuiteProperty {
  return defineProperty(
    `a ${operation} killed with SIGKILL at a random step or moment, then a rerun, leaves a valid repository whose kept snapshot restores`,
    { numRuns: 20 },
    () =>
      fc.asyncProperty(
        smallTreeArbitrary(),
        fc.array(changeArbitrary(), { minLength: 1, maxLength: 4 }),
        maintenanceCrashArbitrary(operation),
        (nodes, changes, crash) =>
          inDir(harness, async (dir) => {
            const [source, repo] = [`${dir}/src`, `${dir}/repo`];
            await harness.writeTree(source, nodes);
            await harness.backup(source, repo, false);
            for (const [index, change] of changes.entries()) {
              await harness.applyChange(source, {
                ...change,
                sizeBytes: change.sizeBytes % 70_000,
              });
              if (index < 2) await harness.backup(source, repo, true);
            }
            await harness.backup(source, repo, true);
            await harness.forgetAllButLatest(repo);
            await harness.crashMaintenance(operation, repo, crash);
            await harness.maintain(operation, repo);
            // The chain a consolidate made unneeded is garbage for prune, not a leftover.
            if (operation === "consolidate") await harness.maintain("prune", repo);
            await expectValid(harness, dir, await harness.describe(source));
          }),
      ),
  );
}

/** Verify passes, nothing is left over, and every snapshot restores to the (unchanged) source. */
async function expectValid(
  harness: ReliabilityHarness,
  dir: string,
  source: SeenEntry[],
): Promise<void> {
  const repo = `${dir}/repo`;
  const problems = await harness.verify(repo);
  if (problems.length > 0) throw new Error(`verify found: ${problems.join("; ")}`);
  const leftovers = await harness.leftovers(repo);
  if (leftovers.length > 0) throw new Error(`left over after the rerun: ${leftovers.join(", ")}`);
  for (const snapshot of await harness.snapshots(repo)) {
    const target = `${dir}/out-${snapshot}`;
    await harness.restore(repo, snapshot, target);
    equalTrees(await harness.describe(target), source, `snapshot ${snapshot}`);
  }
}

/**
 * The reliability suite.
 *
 * @param harness the implementation, disk and processes
 * @returns the suite
 */
export function reliabilitySuite(harness: ReliabilityHarness): Suite {
  const properties: SuiteProperty[] = [
    crashThenRerun(harness),
    maintenanceCrashThenRerun(harness, "prune"),
    maintenanceCrashThenRerun(harness, "consolidate"),
  ];
  return { name: "reliability", properties };
}
