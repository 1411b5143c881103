/**
 * Issue 9 item 8's fallback rule: with `--channel auto`, a storage path that fails mid-job
 * (here the client host is terminated while it sends through the region, as a failing storage
 * system or a lost lease would end it) before any snapshot was committed gives way to the
 * network path, and the summary says why; with `--channel storage` the job fails instead.
 */

import assert from "node:assert/strict";
import { runBackupJob } from "./backup_job.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { describeTree, withTempDir, writeFileWith } from "../_testing.ts";

async function tree(root: string): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (let i = 0; i < 12; i++) {
    await writeFileWith(
      `${root}/f${i}`,
      crypto.getRandomValues(new Uint8Array(65536)).map((b) => b ^ i),
    );
    await writeFileWith(`${root}/big${i}`, new Uint8Array(1 << 20).fill(i));
  }
}

const drill = { mode: "fs" as const, incremental: false, ioTimeoutMs: 2_000, progressEveryMs: 1 };

Deno.test("auto: a storage path failing mid-job before any commit gives way to the network, and the summary says why", async () => {
  await withTempDir(async (dir) => {
    await tree(`${dir}/src`);
    const summary = await runBackupJob({
      ...drill,
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      channel: "auto",
      failStorageAfterBytes: 4 << 20,
    });
    assert.equal(summary.dataPath, "network");
    assert.match(
      summary.fallbackReason ?? "",
      /storage path failed mid-job .*nothing was committed/,
    );
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/out`,
    });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("storage: the same mid-job failure fails the job and commits nothing", async () => {
  await withTempDir(async (dir) => {
    await tree(`${dir}/src`);
    await assert.rejects(runBackupJob({
      ...drill,
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      channel: "storage",
      failStorageAfterBytes: 4 << 20,
    }));
    const snapshots = await Array.fromAsync(Deno.readDir(`${dir}/repo/snapshots`)).catch(() => []);
    assert.deepEqual(snapshots, []);
  });
});
