import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { initRepository, listSnapshotIds, MARKER_FILE } from "./repository.ts";
import { beginSnapshot } from "./snapshot_writer.ts";
import { describeTree, spawnBackupChild, withTempDir, writeFileWith } from "../_testing.ts";

async function smallSource(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/src`);
  await writeFileWith(`${dir}/src/a.txt`, "alpha");
  await writeFileWith(`${dir}/src/b.bin`, new Uint8Array(256 * 1024).fill(7));
  return `${dir}/src`;
}

Deno.test("a backup process killed with SIGKILL mid-write leaves a lock the next backup takes over at once", async () => {
  await withTempDir(async (dir) => {
    const source = await smallSource(dir);
    await initRepository(`${dir}/repo`);
    const child = await spawnBackupChild(source, `${dir}/repo`, "archive-bytes");
    try {
      assert.equal(await child.firstLine, "at archive-bytes");
      assert.ok(await Deno.lstat(`${dir}/repo/lock`), "the writer holds the lock file");
    } finally {
      assert.equal((await child.kill("SIGKILL")).signal, "SIGKILL");
    }
    // The dead writer's lock file and partial archive are still there; the lock is not held.
    // Waiting 10 s at most: taking over a dead writer's lock must not need the wait at all.
    const summary = await runLocalBackup({ source, repo: `${dir}/repo`, lockWaitMs: 10_000 });
    assert.deepEqual(await listSnapshotIds({ path: `${dir}/repo` }), [summary.snapshot]);
    assert.deepEqual(
      (await describeTree(`${dir}/repo`)).map((e) => e.path),
      [
        MARKER_FILE,
        "snapshots",
        `snapshots/${summary.snapshot}.checked.json`,
        `snapshots/${summary.snapshot}.manifest.json`,
        `snapshots/${summary.snapshot}.tar`,
        "tmp",
      ],
      "no lock, no partial archive left",
    );
  });
});

Deno.test("a live writer in another process blocks the next one, and locked names the file and the holder", async () => {
  await withTempDir(async (dir) => {
    const source = await smallSource(dir);
    const repo = await initRepository(`${dir}/repo`);
    const child = await spawnBackupChild(source, repo.path, "archive-bytes");
    try {
      assert.equal(await child.firstLine, "at archive-bytes");
      await assert.rejects(beginSnapshot(repo, { lockWaitMs: 300 }), (error: Error) => {
        assert.equal((error as Error & { code: string }).code, "locked");
        assert.match(error.message, new RegExp(`${dir}/repo/lock`));
        assert.match(error.message, new RegExp(`pid ${child.process.pid} on `));
        return true;
      });
    } finally {
      await child.kill("SIGKILL");
    }
  });
});
