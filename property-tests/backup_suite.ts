/**
 * Conformance suite of a backup implementation: random trees survive backup and restore with
 * their metadata, and an incremental snapshot after random changes restores to the changed tree
 * while archiving only the changed files; restore and verify refuse a changed byte of stored
 * content and a listing path that escapes the target or holds a NUL (`backup_refusals.ts`). The
 * disk side is a {@link BackupHarness} argument, so the suite itself imports nothing from a
 * runtime.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import { corruptByteProperty, hostilePathProperty } from "./backup_refusals.ts";

/** One node of a generated tree; `parent` picks among directories created before it. */
export interface NodeSpec {
  /** Index among the directories created before this node (modulo their number). */
  readonly parent: number;
  /** Its name (odd ones included). */
  readonly name: string;
  /** What to create. */
  readonly kind: "file" | "dir" | "symlink";
  /** A file's size. */
  readonly sizeBytes: number;
  /** Seeds a file's content. */
  readonly seed: number;
  /** Permission bits. */
  readonly mode: number;
  /** Modification time, ms since the epoch. */
  readonly mtimeMs: number;
  /** A symlink's target. */
  readonly target: string;
}

/** One random change; `pick` chooses the entry it applies to. */
export interface ChangeSpec {
  /** What to do. */
  readonly op: "modify" | "delete" | "add" | "rename" | "chmod";
  /** Which entry (modulo their number). */
  readonly pick: number;
  /** A new name (add, rename). */
  readonly name: string;
  /** New size (modify, add). */
  readonly sizeBytes: number;
  /** Seeds new content. */
  readonly seed: number;
  /** New permission bits (chmod). */
  readonly mode: number;
}

/** An entry as the harness sees it on disk (its own walk, not the product's). */
export interface SeenEntry {
  /** Path relative to the tree's root. */
  readonly path: string;
  /** `file`, `dir`, `symlink` or what else the walk found. */
  readonly type: string;
  /** Permission bits. */
  readonly mode: number;
  /** Modification time, ms (null where it is not compared). */
  readonly mtimeMs: number | null;
  /** Size and content hash of a file, target of a symlink. */
  readonly detail: string;
}

/** The implementation under test and the disk operations the suite needs. */
export interface BackupHarness {
  /** A fresh empty directory. */
  makeDir(): Promise<string>;
  /** Removes a directory made by `makeDir`. */
  removeDir(path: string): Promise<void>;
  /** Creates the nodes under `root` (which exists), with modes and mtimes. */
  writeTree(root: string, nodes: readonly NodeSpec[]): Promise<void>;
  /** Applies one change to the tree under `root`. */
  applyChange(root: string, change: ChangeSpec): Promise<void>;
  /** Every entry under `root`, walked by the harness itself. */
  describe(root: string): Promise<SeenEntry[]>;
  /** Backs `source` up into `repo` (created when missing) with the implementation under test. */
  backup(source: string, repo: string, incremental: boolean): Promise<{ snapshot: string }>;
  /** Restores a snapshot into `target` with the implementation under test. */
  restore(repo: string, snapshot: string, target: string): Promise<void>;
  /** Paths of the regular files held by a snapshot's archive. */
  archivedFiles(repo: string, snapshot: string): Promise<string[]>;
  /**
   * Verifies a snapshot with the implementation under test.
   *
   * @returns the problems found, one line each (empty when the snapshot is sound); rejects
   *   when it cannot verify at all
   */
  verify(repo: string, snapshot: string): Promise<string[]>;
  /**
   * Changes one stored byte of the content of file `path` of `snapshot`, wherever the
   * implementation keeps it (in a parent's data too), as a failing disk or a tamperer would:
   * the byte at `at` modulo the file's size.
   *
   * @returns false when the file has no content to change (it is empty)
   */
  corruptFileByte(repo: string, snapshot: string, path: string, at: number): Promise<boolean>;
  /**
   * Renames entry `from` of `snapshot`'s listing to `to`, leaving the rest as stored (a
   * repository written by an attacker): `to` may escape the target or hold a NUL.
   */
  renameEntry(repo: string, snapshot: string, from: string, to: string): Promise<void>;
}

/** Size of the occasional large file (larger than the 8 MiB ring and the 1 MiB read size). */
export const LARGE_FILE_BYTES = (8 << 20) + 4099;

const ODD_NAMES = [
  "a",
  "b c",
  "-rf",
  "--",
  "new\nline",
  "ünïcödé",
  "日本語",
  "tab\there",
  "x.txt",
  ".hidden",
  "...",
  "$HOME",
  "*",
  "a\\b",
];

/** File and directory names, odd ones included (never "", ".", ".." or with "/" or NUL). */
export function nameArbitrary(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(...ODD_NAMES),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).filter((s) =>
      !s.includes("/") && !s.includes("\0") && s !== "." && s !== ".." &&
      new TextEncoder().encode(s).length <= 200
    ),
  );
}

function sizeArbitrary(): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: fc.constant(0), weight: 2 },
    { arbitrary: fc.integer({ min: 1, max: 70_000 }), weight: 12 },
    { arbitrary: fc.constant(LARGE_FILE_BYTES), weight: 1 },
  );
}

/** Random trees, nested, with empty files and directories and symlinks. */
export function treeArbitrary(): fc.Arbitrary<NodeSpec[]> {
  const node = fc.record({
    parent: fc.nat(),
    name: nameArbitrary(),
    kind: fc.constantFrom("file" as const, "file" as const, "dir" as const, "symlink" as const),
    sizeBytes: sizeArbitrary(),
    seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
    mode: fc.constantFrom(0o644, 0o600, 0o755, 0o640, 0o400, 0o750, 0o700),
    mtimeMs: fc.integer({ min: 1_000_000_000_000, max: 2_000_000_000_000 }),
    target: fc.oneof(nameArbitrary(), fc.constantFrom("../escape", "/etc/passwd", "a/b/c")),
  });
  return fc.array(node, { minLength: 1, maxLength: 20 });
}

/** Random changes to a tree: modify, delete, add, rename, chmod (odd names included). */
export function changeArbitrary(): fc.Arbitrary<ChangeSpec> {
  return fc.record({
    op: fc.constantFrom(
      "modify" as const,
      "delete" as const,
      "add" as const,
      "rename" as const,
      "chmod" as const,
    ),
    pick: fc.nat(),
    name: nameArbitrary(),
    sizeBytes: sizeArbitrary(),
    seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
    mode: fc.constantFrom(0o644, 0o600, 0o755, 0o444),
  });
}

/** Files of `after` that are new or differ from `before` (what an incremental must archive). */
function changedFiles(before: readonly SeenEntry[], after: readonly SeenEntry[]): string[] {
  const old = new Map(before.map((e) => [e.path, e]));
  return after.filter((e) => {
    if (e.type !== "file") return false;
    const was = old.get(e.path);
    return was === undefined || was.type !== "file" || was.mode !== e.mode ||
      was.mtimeMs !== e.mtimeMs ||
      was.detail !== e.detail;
  }).map((e) => e.path).sort();
}

/** Throws naming `what` when two described trees differ. */
export function equalTrees(actual: SeenEntry[], expected: SeenEntry[], what: string): void {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${what}: restored tree differs\nrestored: ${a}\nexpected: ${b}`);
}

/** Runs `body` in a fresh directory from the harness, removed afterwards. */
export async function inDir<T>(
  harness: Pick<BackupHarness, "makeDir" | "removeDir">,
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await harness.makeDir();
  try {
    return await body(dir);
  } finally {
    await harness.removeDir(dir);
  }
}

/** The properties of what restore and verify must refuse (a test of the product path skips them). */
export const REFUSALS = [
  "one changed byte of a file's stored content makes restore fail without writing wrong bytes, and verify report it",
  "a listing path with .., absolute, below a symlink or with a NUL makes restore fail writing nothing outside its target, and verify report it",
] as const;

/**
 * The backup suite.
 *
 * @param harness the implementation and disk operations
 * @returns the suite
 */
export function backupSuite(harness: BackupHarness): Suite {
  return {
    name: "backup",
    properties: [
      defineProperty(
        "a random tree restores identically, metadata included",
        { numRuns: 25 },
        () =>
          fc.asyncProperty(treeArbitrary(), (nodes) =>
            inDir(harness, async (dir) => {
              await harness.writeTree(`${dir}/src`, nodes);
              const { snapshot } = await harness.backup(`${dir}/src`, `${dir}/repo`, false);
              await harness.restore(`${dir}/repo`, snapshot, `${dir}/out`);
              equalTrees(
                await harness.describe(`${dir}/out`),
                await harness.describe(`${dir}/src`),
                "full",
              );
            })),
      ),
      defineProperty(
        "after random changes an incremental restores the changed tree and archives only changes",
        { numRuns: 25 },
        () =>
          fc.asyncProperty(
            treeArbitrary(),
            fc.array(changeArbitrary(), { maxLength: 8 }),
            (nodes, changes) =>
              inDir(harness, async (dir) => {
                await harness.writeTree(`${dir}/src`, nodes);
                await harness.backup(`${dir}/src`, `${dir}/repo`, false);
                const before = await harness.describe(`${dir}/src`);
                for (const change of changes) await harness.applyChange(`${dir}/src`, change);
                const after = await harness.describe(`${dir}/src`);
                const { snapshot } = await harness.backup(`${dir}/src`, `${dir}/repo`, true);
                await harness.restore(`${dir}/repo`, snapshot, `${dir}/out`);
                equalTrees(await harness.describe(`${dir}/out`), after, "incremental");
                const archived = (await harness.archivedFiles(`${dir}/repo`, snapshot)).sort();
                const expected = changedFiles(before, after);
                if (JSON.stringify(archived) !== JSON.stringify(expected)) {
                  throw new Error(
                    `incremental archive holds ${JSON.stringify(archived)}, changed: ${
                      JSON.stringify(expected)
                    }`,
                  );
                }
              }),
          ),
      ),
      defineProperty(
        REFUSALS[0],
        { numRuns: 10 },
        () => corruptByteProperty(harness),
      ),
      defineProperty(
        REFUSALS[1],
        { numRuns: 8 },
        () => hostilePathProperty(harness),
      ),
    ],
  };
}
