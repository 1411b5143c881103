import assert from "node:assert/strict";
import { forgetSnapshots } from "./forget.ts";
import { acquireLock } from "./_repo_lock.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { listSnapshotIds, openRepository, repoPaths } from "./repository.ts";
import { restoreSnapshot } from "./restore.ts";
import { describeTree, withTempDir, writeFileWith } from "../_testing.ts";

/** Three snapshots of `one` (full, then two incrementals after changes) and one of `two`. */
async function repository(dir: string) {
  await Deno.mkdir(`${dir}/one`);
  await Deno.mkdir(`${dir}/two`);
  const repo = `${dir}/repo`;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    await writeFileWith(`${dir}/one/f${i}`, `file ${i}`);
    ids.push((await runLocalBackup({ source: `${dir}/one`, repo, incremental: i > 0 })).snapshot);
  }
  const other = (await runLocalBackup({ source: `${dir}/two`, repo })).snapshot;
  return { repo, ids, other };
}

async function names(repo: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(`${repo}/snapshots`)) found.push(entry.name);
  return found.sort();
}

Deno.test("forget removes the manifests no rule keeps, per source, and leaves every archive", async () => {
  await withTempDir(async (dir) => {
    const { repo, ids, other } = await repository(dir);
    const archivesBefore = (await names(repo)).filter((n) => n.endsWith(".tar"));
    const report = await forgetSnapshots({ repo, rules: { last: 1 }, timeZone: "UTC" });
    assert.deepEqual(report.kept, [ids[2], other].sort());
    assert.deepEqual(report.removed, [ids[0], ids[1]]);
    assert.deepEqual(
      report.groups.map((g) => g.decisions.map((d) => [d.snapshot.id, d.reasons])),
      [[[ids[2], ["last"]], [ids[1], []], [ids[0], []]], [[other, ["last"]]]],
    );
    const opened = await openRepository(repo);
    assert.deepEqual(await listSnapshotIds(opened), [ids[2], other].sort());
    assert.deepEqual((await names(repo)).filter((n) => n.endsWith(".tar")), archivesBefore);
    // The kept incremental still reads its files from the forgotten snapshots' archives.
    await restoreSnapshot({ repo, snapshot: ids[2]!, target: `${dir}/out` });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/one`));
    const again = await forgetSnapshots({ repo, rules: { last: 1 }, timeZone: "UTC" });
    assert.deepEqual(again.removed, [], "a second forget with the same rules removes nothing");
  });
});

Deno.test("forget --dry-run reports the same decisions and removes nothing", async () => {
  await withTempDir(async (dir) => {
    const { repo, ids } = await repository(dir);
    const before = await names(repo);
    const dry = await forgetSnapshots({ repo, rules: { last: 2 }, dryRun: true });
    assert.deepEqual([dry.dryRun, dry.removed], [true, [ids[0]]]);
    assert.deepEqual(await names(repo), before);
    const real = await forgetSnapshots({ repo, rules: { last: 2 } });
    assert.deepEqual([real.dryRun, real.groups], [false, dry.groups]);
  });
});

Deno.test("forget with a source decides on that source alone", async () => {
  await withTempDir(async (dir) => {
    const { repo, ids, other } = await repository(dir);
    const report = await forgetSnapshots({ repo, rules: { last: 1 }, source: `${dir}/two/` });
    assert.deepEqual([report.kept, report.removed], [[other], []]);
    const one = await forgetSnapshots({ repo, rules: { last: 1 }, source: `${dir}/one` });
    assert.deepEqual(one.removed, [ids[0], ids[1]]);
    assert.deepEqual(await listSnapshotIds(await openRepository(repo)), [ids[2], other].sort());
  });
});

Deno.test("forget refuses a repository with an unreadable manifest and removes nothing", async () => {
  await withTempDir(async (dir) => {
    const { repo, ids } = await repository(dir);
    await Deno.writeTextFile(repoPaths.manifest({ path: repo }, ids[1]!), '{"format": ');
    const before = await names(repo);
    await assert.rejects(forgetSnapshots({ repo, rules: { last: 1 } }), {
      code: "corrupt",
      message: new RegExp(ids[1]!),
    });
    assert.deepEqual(await names(repo), before);
  });
});

Deno.test("forget refuses bad rules with a RangeError naming the rule, and waits for a writer's lock", async () => {
  await withTempDir(async (dir) => {
    const { repo } = await repository(dir);
    await assert.rejects(forgetSnapshots({ repo, rules: { daily: -5 } }), RangeError);
    await assert.rejects(
      forgetSnapshots({ repo, rules: { last: 1 }, timeZone: "Nowhere/Special" }),
      /time zone/,
    );
    const release = await acquireLock(`${repo}/lock`, 0);
    try {
      await assert.rejects(forgetSnapshots({ repo, rules: { last: 1 }, lockWaitMs: 100 }), {
        code: "locked",
      });
    } finally {
      await release();
    }
  });
});

Deno.test("forget killed between a snapshot's two removals leaves its manifest without a record, never a record without its manifest", async () => {
  await withTempDir(async (dir) => {
    const { repo, ids } = await repository(dir);
    const opened = await openRepository(repo);
    const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
    assert.ok(await exists(repoPaths.checked(opened, ids[0]!)), "the backup wrote a record");
    const killed = new Error("killed between the removals");
    await assert.rejects(
      forgetSnapshots({
        repo,
        rules: { last: 1 },
        onStep: (step) => {
          if (step === "record-removed") throw killed;
        },
      }),
      (error) => error === killed,
    );
    assert.deepEqual(
      [
        await exists(repoPaths.manifest(opened, ids[0]!)),
        await exists(repoPaths.checked(opened, ids[0]!)),
      ],
      [true, false],
      "the first forgotten snapshot keeps its manifest (a rerun removes it) and lost its record",
    );
    const rerun = await forgetSnapshots({ repo, rules: { last: 1 } });
    assert.deepEqual(rerun.removed, [ids[0], ids[1]]);
    for (const id of [ids[0]!, ids[1]!]) {
      assert.equal(await exists(repoPaths.checked(opened, id)), false, `record of ${id} left`);
    }
  });
});
