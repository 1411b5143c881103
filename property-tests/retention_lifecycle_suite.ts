/**
 * A repository that lives for years: random sequences (`fc.commands`) of full and incremental
 * backups over a changing tree (hard links included), forget with random keep rules, prune and
 * consolidate, with crashes injected between their steps. The model is the tree each snapshot
 * was taken from. After every crash and at the end, every kept snapshot restores identical to its
 * tree (content, modes, mtimes, symlinks, hard links) and verify passes; after every prune that
 * completes, no archive is left that nothing references.
 *
 * A crash is what a process killed at that step leaves on disk: the harness copies the
 * repository at that step and puts the copy in its place once the operation is over, so the next
 * command meets exactly the files the dead process left (its lock is a plain unlocked file).
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import {
  type BackupHarness,
  changeArbitrary as backupChangeArbitrary,
  type ChangeSpec,
  equalTrees,
  inDir,
  type NodeSpec,
  type SeenEntry,
  treeArbitrary,
} from "./backup_suite.ts";
import type { KeepRules } from "../src/core/backup/retention.ts";

/** One change to the tree: the backup suite's, or a hard link to a file under a new name. */
export type LifecycleChange = ChangeSpec | {
  readonly op: "link";
  readonly pick: number;
  readonly name: string;
};

/** Whether an operation was crashed (the repository is what the dead process left). */
export interface Outcome {
  /** True when the operation was cut short at the crash step. */
  readonly crashed: boolean;
}

/**
 * The implementation under test and the disk operations the suite needs: the backup suite's
 * (its `describe` must name hard links: which names share a file), and the retention ones.
 */
export interface LifecycleHarness
  extends
    Pick<BackupHarness, "makeDir" | "removeDir" | "writeTree" | "describe" | "backup" | "restore"> {
  /** Applies one change to the tree under `root`. */
  applyChange(root: string, change: LifecycleChange): Promise<void>;
  /** Forget; crashed at its step number `crashAt` when given (and reached). */
  forget(
    repo: string,
    rules: KeepRules,
    crashAt?: number,
  ): Promise<Outcome & { removed: string[] }>;
  /**
   * Prune (repacking archives with more than `maxUnusedPercent` unused, 5 by default); crashed
   * at its step number `crashAt` when given (and reached).
   */
  prune(repo: string, crashAt?: number, maxUnusedPercent?: number): Promise<Outcome>;
  /** Consolidate a snapshot; crashed at its step number `crashAt` when given (and reached). */
  consolidate(repo: string, snapshot: string, crashAt?: number): Promise<Outcome>;
  /** Ids of the committed snapshots, oldest first. */
  snapshots(repo: string): Promise<string[]>;
  /** Problems verify finds (none for a sound repository). */
  verify(repo: string): Promise<string[]>;
  /** Archives in `snapshots/` that no manifest references and that are no snapshot's own. */
  unreferenced(repo: string): Promise<string[]>;
}

interface Model {
  /** The tree each kept snapshot was taken from. */
  readonly trees: Map<string, SeenEntry[]>;
  restores: number;
}

interface Real {
  readonly harness: LifecycleHarness;
  readonly dir: string;
  readonly source: string;
  readonly repo: string;
}

type Command = fc.AsyncCommand<Model, Real>;

/** Every kept snapshot restores to its tree; verify passes; the ids are the model's. */
async function expectWhole(model: Model, real: Real, what: string): Promise<void> {
  const problems = await real.harness.verify(real.repo);
  if (problems.length > 0) throw new Error(`${what}: verify found ${problems.join("; ")}`);
  const ids = await real.harness.snapshots(real.repo);
  const expected = [...model.trees.keys()].sort();
  if (JSON.stringify(ids) !== JSON.stringify(expected)) {
    throw new Error(
      `${what}: snapshots ${JSON.stringify(ids)}, expected ${JSON.stringify(expected)}`,
    );
  }
  for (const [id, tree] of model.trees) {
    const target = `${real.dir}/out-${model.restores++}`;
    await real.harness.restore(real.repo, id, target);
    equalTrees(await real.harness.describe(target), tree, `${what}: snapshot ${id}`);
  }
}

async function expectNoUnreferenced(real: Real, what: string): Promise<void> {
  const left = await real.harness.unreferenced(real.repo);
  if (left.length > 0) throw new Error(`${what}: archives nothing references: ${left.join(", ")}`);
}

class BackupCommand implements Command {
  constructor(readonly changes: readonly LifecycleChange[], readonly incremental: boolean) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    for (const change of this.changes) await real.harness.applyChange(real.source, change);
    const { snapshot } = await real.harness.backup(real.source, real.repo, this.incremental);
    model.trees.set(snapshot, await real.harness.describe(real.source));
  }
  toString = () =>
    `backup(${this.incremental ? "incremental" : "full"}, ${JSON.stringify(this.changes)})`;
}

class ForgetCommand implements Command {
  constructor(
    readonly rules: KeepRules,
    readonly crashAt: number | undefined,
    readonly thenPrune: PruneCommand | undefined,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const outcome = await real.harness.forget(real.repo, this.rules, this.crashAt);
    const left = new Set(await real.harness.snapshots(real.repo));
    for (const id of outcome.removed) {
      if (!model.trees.has(id)) throw new Error(`forget removed ${id}, which the model lacks`);
    }
    for (const id of [...model.trees.keys()]) if (!left.has(id)) model.trees.delete(id);
    if (outcome.crashed) await expectWhole(model, real, `after ${this}`);
    await this.thenPrune?.run(model, real);
  }
  toString = () =>
    `forget(${JSON.stringify(this.rules)}, crash at ${this.crashAt ?? "none"})` +
    (this.thenPrune === undefined ? "" : ` then ${this.thenPrune}`);
}

class PruneCommand implements Command {
  constructor(readonly crashAt: number | undefined, readonly maxUnusedPercent: number) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const outcome = await real.harness.prune(real.repo, this.crashAt, this.maxUnusedPercent);
    if (outcome.crashed) await expectWhole(model, real, `after ${this}`);
    else await expectNoUnreferenced(real, `after ${this}`);
  }
  toString = () =>
    `prune(max unused ${this.maxUnusedPercent}%, crash at ${this.crashAt ?? "none"})`;
}

class ConsolidateCommand implements Command {
  constructor(readonly pick: number, readonly crashAt: number | undefined) {}
  check = (model: Readonly<Model>) => model.trees.size > 0;
  async run(model: Model, real: Real): Promise<void> {
    const ids = [...model.trees.keys()].sort();
    const snapshot = ids[this.pick % ids.length]!;
    const outcome = await real.harness.consolidate(real.repo, snapshot, this.crashAt);
    if (outcome.crashed) await expectWhole(model, real, `after ${this}`);
  }
  toString = () => `consolidate(#${this.pick}, crash at ${this.crashAt ?? "none"})`;
}

function changeArbitrary(): fc.Arbitrary<LifecycleChange> {
  const plain = backupChangeArbitrary().map((change) => ({
    ...change,
    sizeBytes: Math.min(change.sizeBytes, 20_000),
  }));
  const link = fc.record({
    op: fc.constant("link" as const),
    pick: fc.nat(),
    name: fc.constantFrom("hard", "hard 2", "link.bin"),
  });
  return fc.oneof({ arbitrary: plain, weight: 5 }, { arbitrary: link, weight: 1 });
}

function rulesArbitrary(): fc.Arbitrary<KeepRules> {
  return fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: 2 }).map((last) => ({ last })), weight: 4 },
    { arbitrary: fc.integer({ min: 1, max: 2 }).map((daily) => ({ daily })), weight: 1 },
    {
      arbitrary: fc.record({
        last: fc.integer({ min: 1, max: 2 }),
        weekly: fc.integer({ min: 1, max: 2 }),
      }),
      weight: 1,
    },
    { arbitrary: fc.constant({ within: "1h" }), weight: 1 },
  );
}

const crashArbitrary = fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined, freq: 2 });

function commandsArbitrary(): fc.Arbitrary<Iterable<Command>> {
  const incremental = fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, fc.constant(false));
  const backup = fc.tuple(fc.array(changeArbitrary(), { maxLength: 4 }), incremental).map(
    ([changes, incremental]) => new BackupCommand(changes, incremental),
  );
  // Prune at restic's 5%, or repacking any archive with an unused byte (more repacks to crash).
  const prune = fc.tuple(crashArbitrary, fc.constantFrom(0, 0, 5)).map(([crash, maxUnused]) =>
    new PruneCommand(crash, maxUnused)
  );
  // Mostly followed by a prune (as forget --prune), where repacks, and crashes in them, happen.
  const forget = fc.tuple(rulesArbitrary(), crashArbitrary, fc.option(prune, { freq: 3 })).map(
    ([rules, crash, then]) => new ForgetCommand(rules, crash, then ?? undefined),
  );
  const consolidate = fc.tuple(fc.nat(), crashArbitrary).map(([pick, crash]) =>
    new ConsolidateCommand(pick, crash)
  );
  // Backups three times as often as the rest, so that forgets find something to remove.
  return fc.commands([backup, backup, backup, forget, forget, prune, prune, consolidate], {
    maxCommands: 14,
    size: "max",
  });
}

/** Small trees: the sequences are about the repository's life, not about file sizes. */
function smallTreeArbitrary(): fc.Arbitrary<NodeSpec[]> {
  return treeArbitrary().map((nodes) =>
    nodes.map((node) => ({ ...node, sizeBytes: Math.min(node.sizeBytes, 20_000) }))
  );
}

/**
 * The retention lifecycle suite.
 *
 * @param harness the implementation and disk operations
 * @returns the suite
 */
export function retentionLifecycleSuite(harness: LifecycleHarness): Suite {
  return {
    name: "retention lifecycle",
    properties: [
      defineProperty(
        "random backups, forgets, prunes and consolidates, crashed between steps, keep every kept snapshot restorable and leave nothing unreferenced",
        { numRuns: 12 },
        () =>
          fc.asyncProperty(
            smallTreeArbitrary(),
            commandsArbitrary(),
            (nodes, commands) =>
              inDir(harness, async (dir) => {
                const real: Real = { harness, dir, source: `${dir}/src`, repo: `${dir}/repo` };
                await harness.writeTree(real.source, nodes);
                const model: Model = { trees: new Map(), restores: 0 };
                const first = await harness.backup(real.source, real.repo, false);
                model.trees.set(first.snapshot, await harness.describe(real.source));
                await fc.asyncModelRun(() => ({ model, real }), commands);
                await harness.prune(real.repo); // completes whatever a crash left
                await expectNoUnreferenced(real, "at the end");
                await expectWhole(model, real, "at the end");
              }),
          ),
      ),
    ],
  };
}
