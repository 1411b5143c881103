import assert from "node:assert/strict";
import { consolidateSnapshot } from "./consolidate.ts";
import { forgetSnapshots } from "./forget.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { pruneRepository } from "./prune.ts";
import { readManifest, repoPaths } from "./repository.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";
import { copyTree, describeTree, withTempDir, writeFileWith } from "../_testing.ts";

/** A full snapshot A, then B and C after changes, with a tree of dirs, symlinks and a link. */
async function chain(dir: string) {
  const source = `${dir}/src`;
  const repo = `${dir}/repo`;
  await Deno.mkdir(`${source}/docs/deep`, { recursive: true });
  await Deno.mkdir(`${source}/empty`);
  await writeFileWith(`${source}/docs/a.txt`, "alpha");
  await writeFileWith(`${source}/docs/deep/b.bin`, new Uint8Array(70_000).fill(7), 0o600);
  await writeFileWith(`${source}/${"long-".repeat(30)}name`, "a name that needs PAX");
  await writeFileWith(`${source}/primary`, "linked");
  await Deno.link(`${source}/primary`, `${source}/second`);
  await Deno.symlink("docs/a.txt", `${source}/link`);
  const trees = new Map<string, Awaited<ReturnType<typeof describeTree>>>();
  const take = async (incremental: boolean) => {
    const summary = await runLocalBackup({ source, repo, incremental });
    trees.set(summary.snapshot, await describeTree(source));
    return summary.snapshot;
  };
  const a = await take(false);
  await writeFileWith(`${source}/docs/a.txt`, "alpha, second version", 0o644, 1_700_000_000);
  const b = await take(true);
  await writeFileWith(`${source}/new.txt`, "added in C");
  const c = await take(true);
  return { source, repo, a, b, c, trees };
}

async function restored(repo: string, snapshot: string, target: string) {
  await restoreSnapshot({ repo, snapshot, target });
  return await describeTree(target);
}

Deno.test("consolidate makes an incremental stand alone: a full archive, parent null, former parent recorded", async () => {
  await withTempDir(async (dir) => {
    const { repo, a, b, c, trees } = await chain(dir);
    const report = await consolidateSnapshot({ repo, snapshot: c, nowMs: 1_800_000_000_000 });
    assert.deepEqual([report.alreadyFull, report.formerParent, report.readFrom], [false, b, [
      a,
      b,
    ]]);
    assert.ok(report.archiveBytesAfter > report.archiveBytesBefore);
    const manifest = await readManifest({ path: repo }, c);
    assert.equal(manifest.parent, null);
    assert.deepEqual(manifest.consolidated, { parent: b, consolidatedMs: 1_800_000_000_000 });
    assert.deepEqual(manifest.deleted, []);
    assert.ok(manifest.entries.every((e) => e.type !== "file" || e.data === c));
    // It reads nothing else: with every other archive gone it still restores and verifies.
    await Deno.remove(repoPaths.archive({ path: repo }, a));
    await Deno.remove(repoPaths.archive({ path: repo }, b));
    assert.deepEqual(await restored(repo, c, `${dir}/out`), trees.get(c));
    assert.ok((await verifyRepository(repo, c)).ok);
    // And GNU tar alone extracts the same tree from it.
    await Deno.mkdir(`${dir}/tar`);
    const tar = await new Deno.Command("tar", {
      args: ["-xpf", repoPaths.archive({ path: repo }, c), "-C", `${dir}/tar`],
    }).output();
    assert.ok(tar.success, new TextDecoder().decode(tar.stderr));
    // (Directory times aside: tar keeps seconds, and sets a directory's time before members
    // appended later land in it.)
    const withoutDirTimes = (tree: Awaited<ReturnType<typeof describeTree>>) =>
      tree.map((e) => (e.type === "dir" ? { ...e, mtimeMs: null } : e));
    assert.deepEqual(
      withoutDirTimes(await describeTree(`${dir}/tar`)),
      withoutDirTimes(trees.get(c)!),
    );
  });
});

Deno.test("snapshots that read a consolidated snapshot's archive still restore: its old members did not move", async () => {
  await withTempDir(async (dir) => {
    const { repo, b, c, trees } = await chain(dir);
    await consolidateSnapshot({ repo, snapshot: b });
    assert.deepEqual(await restored(repo, c, `${dir}/out-c`), trees.get(c));
    assert.deepEqual(await restored(repo, b, `${dir}/out-b`), trees.get(b));
    assert.ok((await verifyRepository(repo)).ok);
  });
});

Deno.test("after consolidate and forgetting the rest, prune leaves only the consolidated archive", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, c, trees } = await chain(dir);
    await consolidateSnapshot({ repo, snapshot: "latest" });
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const report = await pruneRepository({ repo });
    assert.deepEqual(report.archives.map((x) => x.action).sort(), ["keep", "remove", "remove"]);
    assert.deepEqual(await restored(repo, c, `${dir}/out`), trees.get(c));
    const next = await runLocalBackup({ source, repo, incremental: true });
    assert.deepEqual([next.parent, next.fullReason, next.files], [c, null, 0]);
  });
});

Deno.test("consolidate of a snapshot that stands alone changes nothing and says so", async () => {
  await withTempDir(async (dir) => {
    const { repo, a } = await chain(dir);
    const before = await describeTree(repo);
    const report = await consolidateSnapshot({ repo, snapshot: a });
    assert.deepEqual([report.alreadyFull, report.membersCopied], [true, 0]);
    assert.deepEqual(await describeTree(repo), before);
    await assert.rejects(consolidateSnapshot({ repo, snapshot: "20000101T000000000Z-00000000" }), {
      code: "unknown-snapshot",
    });
  });
});

Deno.test("a consolidate killed after its archive swap is rolled forward by the next writer; killed before, it is dropped", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, b, c, trees } = await chain(dir);
    const copies: Record<string, string> = {};
    await consolidateSnapshot({
      repo,
      snapshot: c,
      onStep: async (step) => {
        if (step !== "manifest-written" && step !== "archive-placed") return;
        copies[step] = `${dir}/crashed-${step}`;
        await copyTree(repo, copies[step]);
      },
    });
    const grown = await readManifest({ path: repo }, c);
    for (const [step, copy] of Object.entries(copies)) {
      // The crashed copy already restores (the old manifest matches the grown archive too).
      assert.deepEqual(await restored(copy, c, `${dir}/early-${step}`), trees.get(c));
      await runLocalBackup({ source, repo: copy, incremental: true }); // the next writer
      const settled = await readManifest({ path: copy }, c);
      const expected = step === "archive-placed" ? grown : await readManifest({ path: repo }, b);
      assert.equal(settled.parent, step === "archive-placed" ? null : expected.id);
      assert.equal(
        settled.archiveBytes,
        (await Deno.stat(repoPaths.archive({ path: copy }, c))).size,
      );
      assert.deepEqual([...Deno.readDirSync(`${copy}/tmp`)], []);
      assert.ok((await verifyRepository(copy)).ok, step);
      assert.deepEqual(await restored(copy, c, `${dir}/late-${step}`), trees.get(c));
    }
  });
});
