/**
 * What a restore and a verify must refuse, as properties of the backup suite over any
 * {@link BackupHarness}: a repository with one byte of a file's stored content changed, and a
 * repository whose listing names a path that escapes the target (`..` leading or inside, an
 * absolute path, a path below a symlink) or holds a NUL. Restore must fail (never succeed
 * quietly), write no file with bytes other than the source's, and write nothing outside its
 * target; verify must report a problem or fail.
 *
 * @module
 */

import fc from "fast-check";
import type { BackupHarness, ChangeSpec, NodeSpec, SeenEntry } from "./backup_suite.ts";
import { inDir, treeArbitrary } from "./backup_suite.ts";

/** Largest file in these trees (corruption and paths need no large files; runs stay cheap). */
const FILE_BYTES_MAX = 70_000;

/** The file every tree holds (first node: no generated name can take its place). */
const VICTIM = "victim-file";
/** The symlink every hostile-path tree holds, to the directory outside the target. */
const ESCAPE = "escape-link";

/** A random tree with sizes capped, led by a non-empty file. */
function smallTree(): fc.Arbitrary<NodeSpec[]> {
  const victim = fc.record({
    sizeBytes: fc.integer({ min: 1, max: FILE_BYTES_MAX }),
    seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
  }).map(({ sizeBytes, seed }): NodeSpec => ({
    parent: 0,
    name: VICTIM,
    kind: "file",
    sizeBytes,
    seed,
    mode: 0o644,
    mtimeMs: 1_500_000_000_000,
    target: "",
  }));
  return fc.tuple(victim, treeArbitrary()).map(([first, nodes]) => [
    first,
    ...nodes.map((n) => ({ ...n, sizeBytes: Math.min(n.sizeBytes, FILE_BYTES_MAX) })),
  ]);
}

/** Throws unless `promise` rejects; returns what it rejected with. */
async function refused(promise: Promise<unknown>, what: string): Promise<unknown> {
  const outcome = await promise.then(() => undefined, (error) => ({ error }));
  if (outcome === undefined) throw new Error(`${what} succeeded`);
  return outcome.error;
}

/** Throws unless verify reports a problem or fails. */
async function verifyRefuses(harness: BackupHarness, repo: string, snapshot: string, what: string) {
  const problems = await harness.verify(repo, snapshot).catch(() => ["verify failed"]);
  if (problems.length === 0) throw new Error(`verify found nothing wrong ${what}`);
}

/** Throws when a restored file is not byte for byte the source's file of that path. */
function noWrongFile(restored: readonly SeenEntry[], source: readonly SeenEntry[]): void {
  const expected = new Map(source.map((e) => [e.path, e]));
  for (const entry of restored.filter((e) => e.type === "file")) {
    const want = expected.get(entry.path);
    if (want === undefined || want.type !== "file" || want.detail !== entry.detail) {
      throw new Error(
        `restore wrote ${JSON.stringify(entry.path)} with other bytes than the source's (${
          JSON.stringify(entry)
        }, source ${JSON.stringify(want)})`,
      );
    }
  }
}

/**
 * Backs up a tree (full, or full then an incremental after a file is added), changes one byte
 * of one file's stored content, and requires restore and verify to refuse.
 *
 * @param harness the implementation under test
 * @returns a fast-check property
 */
export function corruptByteProperty(
  harness: BackupHarness,
): fc.IAsyncProperty<[NodeSpec[], boolean, number, number]> {
  return fc.asyncProperty(
    smallTree(),
    fc.boolean(),
    fc.nat(),
    fc.nat(),
    (nodes, incremental, pick, at) =>
      inDir(harness, async (dir) => {
        const [src, repo] = [`${dir}/src`, `${dir}/repo`];
        await harness.writeTree(src, nodes);
        let { snapshot } = await harness.backup(src, repo, false);
        if (incremental) {
          const sizeBytes = 1 + (at % 5000);
          const added: ChangeSpec = {
            op: "add",
            pick: 0,
            name: "added-file",
            sizeBytes,
            seed: 1 + pick,
            mode: 0o644,
          };
          await harness.applyChange(src, added);
          ({ snapshot } = await harness.backup(src, repo, true));
        }
        const source = await harness.describe(src);
        const before = await harness.verify(repo, snapshot);
        if (before.length > 0) throw new Error(`verify of the intact snapshot: ${before}`);
        const files = source.filter((e) => e.type === "file");
        let corrupted: string | undefined;
        for (let k = 0; k < files.length && corrupted === undefined; k++) {
          const path = files[(pick + k) % files.length]!.path;
          if (await harness.corruptFileByte(repo, snapshot, path, at)) corrupted = path;
        }
        if (corrupted === undefined) throw new Error("the harness changed no stored byte");
        const what = `after a byte of ${JSON.stringify(corrupted)} was changed`;
        await refused(harness.restore(repo, snapshot, `${dir}/out`), `restore ${what}`);
        noWrongFile(await harness.describe(`${dir}/out`).catch(() => []), source);
        await verifyRefuses(harness, repo, snapshot, what);
      }),
  );
}

/** The hostile paths a listing may be given, each for the victim file (`dir` is the run's). */
function hostilePaths(dir: string): ReadonlyArray<readonly [string, string]> {
  return [
    ["a leading ..", `../outside/${VICTIM}`],
    ["a .. inside", `some-dir/../../outside/${VICTIM}`],
    ["an absolute path", `${dir}/outside/${VICTIM}`],
    ["a path below a symlink", `${ESCAPE}/${VICTIM}`],
    ["a NUL", `${VICTIM}\0.txt`],
  ];
}

/**
 * Backs up a tree holding a symlink to a directory outside the restore target, then renames the
 * victim file's entry in the listing to each hostile path in turn (and back): restore must fail
 * and write nothing outside its target, verify must refuse.
 *
 * @param harness the implementation under test
 * @returns a fast-check property
 */
export function hostilePathProperty(harness: BackupHarness): fc.IAsyncProperty<[NodeSpec[]]> {
  return fc.asyncProperty(smallTree(), (nodes) =>
    inDir(harness, async (dir) => {
      const [src, repo, outside] = [`${dir}/src`, `${dir}/repo`, `${dir}/outside`];
      await harness.writeTree(outside, []);
      const link: NodeSpec = { ...nodes[0]!, name: ESCAPE, kind: "symlink", target: outside };
      await harness.writeTree(src, [nodes[0]!, link, ...nodes.slice(1)]);
      const { snapshot } = await harness.backup(src, repo, false);
      for (const [index, [kind, path]] of hostilePaths(dir).entries()) {
        await harness.renameEntry(repo, snapshot, VICTIM, path);
        const what = `with ${kind} in the listing (${JSON.stringify(path)})`;
        await refused(harness.restore(repo, snapshot, `${dir}/out-${index}`), `restore ${what}`);
        const escaped = await harness.describe(outside);
        if (escaped.length > 0) {
          throw new Error(`restore ${what} wrote outside its target: ${JSON.stringify(escaped)}`);
        }
        await verifyRefuses(harness, repo, snapshot, what);
        await harness.renameEntry(repo, snapshot, path, VICTIM);
      }
    }));
}
