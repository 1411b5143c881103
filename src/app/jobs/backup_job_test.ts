import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createHash } from "node:crypto";
import {
  backupHostsRunning,
  type BackupJobOptions,
  blocksHeld,
  jobRegionConfig,
  runBackupJob,
} from "./backup_job.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { listSnapshotIds, openRepository, readManifest } from "../repository/repository.ts";
import { formatRegion } from "../../core/stp/region.ts";
import { spawnBackupChild } from "../_testing.ts";

/** Runs `body` with a fresh temporary directory (its real path), removed afterwards. */
async function withJobDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-job-" }));
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A full file-system backup of `dir/src` into `dir/repo` on the auto channel, and `changes`. */
function fsJob(dir: string, changes: Partial<BackupJobOptions> = {}): BackupJobOptions {
  return {
    source: `${dir}/src`,
    repo: `${dir}/repo`,
    mode: "fs",
    incremental: false,
    channel: "auto",
    ...changes,
  };
}

/** An incremental backup of `dir/src` into `dir/repo` over the network. */
function networkJob(dir: string): BackupJobOptions {
  return fsJob(dir, { incremental: true, channel: "network" });
}

/** Every file's bytes and every directory under `root`, for comparing trees. */
async function treeOf(root: string, relative = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const entry of Deno.readDir(`${root}/${relative}`)) {
    const path = relative === "" ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory) Object.assign(out, { [`${path}/`]: "dir" }, await treeOf(root, path));
    else {
      const hash = createHash("sha256").update(await Deno.readFile(`${root}/${path}`)).digest(
        "hex",
      );
      out[path] = `${hash} mode ${(await Deno.stat(`${root}/${path}`)).mode! & 0o7777}`;
    }
  }
  return out;
}

/** A directory listing of the repository: names and sizes, to prove it did not change. */
async function repoListing(repo: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(repo)) {
    if (entry.isDirectory) {
      for await (const inner of Deno.readDir(`${repo}/${entry.name}`)) {
        names.push(
          `${entry.name}/${inner.name}:${
            (await Deno.stat(`${repo}/${entry.name}/${inner.name}`)).size
          }`,
        );
      }
    } else names.push(`${entry.name}:${(await Deno.stat(`${repo}/${entry.name}`)).size}`);
  }
  return names.sort();
}

async function writeRandomTree(root: string, files: number, fileBytes: number): Promise<void> {
  await Deno.mkdir(`${root}/deep/er`, { recursive: true });
  await Deno.mkdir(`${root}/empty dir`);
  for (let i = 0; i < files; i++) {
    const bytes = new Uint8Array(fileBytes);
    for (let at = 0; at < bytes.length; at += 65536) {
      crypto.getRandomValues(bytes.subarray(at, at + 65536));
    }
    await Deno.writeFile(`${root}/${i % 2 ? "deep/er/" : ""}file ${i}.bin`, bytes);
  }
}

Deno.test("a backup through storage restores to the same tree; an incremental one sends only changes", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 6, 3 * 1024 * 1024);
    const full = await runBackupJob(fsJob(dir)); // zero copy is the default
    assert.equal(full.dataPath, "storage");
    assert.equal(full.fallbackReason, null);
    assert.equal(full.files, 6);
    assert.ok(full.storageBytes >= full.fileBytes, "file data went through storage");
    assert.ok(full.networkBytes < full.fileBytes / 100, "the network carried control traffic only");
    // The archive was packed straight into the ring: no silent fallback to copying into it.
    assert.ok(full.dataFrames.inPlace >= 8, `in-place frames: ${full.dataFrames.inPlace}`);
    // A frame goes by copy only where the span at the ring's end is too short for one (at most
    // once per lap, see reserveData in session.ts).
    assert.ok(
      full.dataFrames.copied <= full.dataFrames.inPlace / 3,
      `copied ${full.dataFrames.copied}, in place ${full.dataFrames.inPlace}`,
    );
    // The server wrote the archive straight from the ring: no silent fallback to copying out.
    assert.ok(full.receivedFrames.lent >= 8, `lent frames: ${full.receivedFrames.lent}`);
    assert.ok(
      full.receivedFrames.copied <= full.receivedFrames.lent / 3,
      `copied ${full.receivedFrames.copied}, lent ${full.receivedFrames.lent}`,
    );
    await Deno.writeTextFile(`${dir}/src/new.txt`, "added");
    await Deno.remove(`${dir}/src/file 0.bin`);
    const incremental = await runBackupJob(fsJob(dir, { incremental: true }));
    assert.equal(incremental.parent, full.snapshot);
    assert.equal(incremental.files, 1, "only the new file was archived");
    assert.ok(incremental.archiveBytes < 16 * 1024);
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/restored` });
    assert.deepEqual(await treeOf(`${dir}/restored`), await treeOf(`${dir}/src`));
  });
});

Deno.test("without a region the data falls back to the network and the summary says why", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 2, 1024);
    const noRegion = await runBackupJob(fsJob(dir, { regionMib: 0 }));
    assert.equal(noRegion.dataPath, "network");
    assert.match(noRegion.fallbackReason!, /no storage region/);
    assert.equal(noRegion.storageBytes, 0);
    const noBlocks = await runBackupJob(fsJob(dir, { controlBlocks: 1 }));
    assert.equal(noBlocks.dataPath, "network");
    // both sides' failures, ranked: the server's refusal, then the agent's wait that it ended
    assert.match(noBlocks.fallbackReason!, /server: ENOBUFS at step \d+ .*; agent: ETIMEDOUT/);
    await assert.rejects(
      runBackupJob(fsJob(dir, { channel: "storage", controlBlocks: 1 })),
      /--channel storage: the storage path could not be set up: (agent|server): ENOBUFS/,
    );
    const onPurpose = await runBackupJob(fsJob(dir, { channel: "network" }));
    assert.deepEqual([onPurpose.dataPath, onPurpose.fallbackReason], ["network", null]);
    assert.equal((await listSnapshotIds(await openRepository(`${dir}/repo`))).length, 3);
  });
});

Deno.test("a database backup goes through storage only and restores with the same rows", async () => {
  await withJobDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/app.db`);
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); ");
    const insert = db.prepare("INSERT INTO items (name) VALUES (?)");
    for (let i = 0; i < 500; i++) insert.run(`item ${i}`);
    const summary = await runBackupJob({
      source: `${dir}/app.db`,
      repo: `${dir}/repo`,
      mode: "db",
      incremental: false,
      channel: "storage",
    });
    db.close();
    assert.equal(summary.dataPath, "storage");
    assert.equal(summary.networkBytes, 0, "the database flow puts everything on storage");
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/restored`,
    });
    const restoredFiles = [...Deno.readDirSync(`${dir}/restored`)].map((e) => e.name);
    assert.equal(restoredFiles.length, 1);
    const restored = new DatabaseSync(`${dir}/restored/${restoredFiles[0]}`);
    assert.deepEqual(restored.prepare("PRAGMA integrity_check").all().map((row) => ({ ...row })), [{
      integrity_check: "ok",
    }]);
    assert.equal(restored.prepare("SELECT count(*) AS n FROM items").get()?.n, 500);
    restored.close();
  });
});

Deno.test("a client host terminated mid-transfer leaves the repository unchanged and the region's blocks reclaimed", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 16, 4 * 1024 * 1024);
    await runBackupJob(fsJob(dir));
    const before = await repoListing(`${dir}/repo`);
    const formatted = formatRegion(jobRegionConfig(64, 64, 2_000), crypto.randomUUID());
    if (!formatted.ok) throw new Error(formatted.message);
    await assert.rejects(
      runBackupJob(
        fsJob(dir, {
          channel: "storage",
          region: formatted.value,
          ioTimeoutMs: 2_000,
          progressEveryMs: 1,
          interruptClientAfterBytes: 4 * 1024 * 1024,
        }),
      ),
    );
    assert.deepEqual(
      await repoListing(`${dir}/repo`),
      before,
      "the repository is exactly as it was",
    );
    assert.equal(
      blocksHeld(formatted.value),
      0,
      "no control block stays held",
    );
  });
});

Deno.test("two backups into one repository at once both succeed, one after the other", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 3, 64 * 1024);
    const options = fsJob(dir);
    const [a, b] = await Promise.all([runBackupJob(options), runBackupJob(options)]);
    assert.notEqual(a.snapshot, b.snapshot);
    assert.equal((await listSnapshotIds(await openRepository(`${dir}/repo`))).length, 2);
  });
});

Deno.test("an incremental job over a parent whose archive is gone is full and its summary says why", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 2, 1024);
    const options = networkJob(dir);
    const first = await runBackupJob(options);
    assert.match(first.fullReason ?? "", /no earlier snapshot/);
    await Deno.remove(`${dir}/repo/snapshots/${first.snapshot}.tar`);
    const second = await runBackupJob(options);
    assert.equal(second.parent, null);
    assert.match(
      second.fullReason ?? "",
      new RegExp(`archive of snapshot ${first.snapshot} is missing`),
    );
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot: second.snapshot, target: `${dir}/out` });
    assert.deepEqual(await treeOf(`${dir}/out`), await treeOf(`${dir}/src`));
  });
});

Deno.test("a repository inside its own source is left out of the backup, and the summary says so", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 2, 4096);
    const options = { ...networkJob(dir), repo: `${dir}/src/.lanfree/repo` };
    const first = await runBackupJob(options);
    const second = await runBackupJob(options);
    for (const summary of [first, second]) {
      assert.deepEqual(summary.excluded, [{
        path: ".lanfree/repo",
        reason: "the repository this backup writes to",
      }]);
    }
    assert.equal(second.parent, first.snapshot);
    assert.equal(second.files, 0, "nothing changed: the repository's own growth is not a change");
    const manifest = await readManifest(await openRepository(options.repo), second.snapshot);
    assert.deepEqual(
      manifest.entries.filter((e) => e.path.startsWith(".lanfree/repo")),
      [],
      "no entry of the repository itself",
    );
    assert.ok(manifest.entries.some((e) => e.path === ".lanfree"), "its parent is kept");
  });
});

Deno.test("a failed job's error says the real cause first, once, without the peer's echo or socket noise", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 2, 1 << 20);
    await runBackupJob({ ...networkJob(dir), incremental: false });
    const child = await spawnBackupChild(`${dir}/src`, `${dir}/repo`, "archive-bytes");
    try {
      assert.equal(await child.firstLine, "at archive-bytes");
      const noise = /ECONNRESET|EPIPE|EBADF|peer closed|client:|server failed/;
      const locked = await runBackupJob({ ...networkJob(dir), lockWaitMs: 200 }).then(
        () => assert.fail("the repository is locked"),
        (error: Error) => error.message,
      );
      assert.match(locked, /^server: repository is locked by another backup: pid \d+/);
      assert.doesNotMatch(locked, noise);
      const missing = await runBackupJob({ ...networkJob(dir), source: `${dir}/gone` }).then(
        () => assert.fail("the source does not exist"),
        (error: Error) => error.message,
      );
      assert.match(missing, /^client: source .*gone does not exist/);
      assert.doesNotMatch(missing, /server:|client failed|ECONNRESET|EPIPE|peer closed/);
    } finally {
      await child.kill();
    }
  });
});

Deno.test("a backup job cancelled before its hosts start ends cancelled: no host, no block held, the repository untouched", async () => {
  await withJobDir(async (dir) => {
    await writeRandomTree(`${dir}/src`, 3, 64 * 1024);
    await runBackupJob(fsJob(dir));
    const before = await repoListing(`${dir}/repo`);
    const formatted = formatRegion(jobRegionConfig(64, 64, 2_000), crypto.randomUUID());
    if (!formatted.ok) throw new Error(formatted.message);
    const cancel = new AbortController();
    cancel.abort(new Error("cancelled before the start"));
    await assert.rejects(
      runBackupJob(
        fsJob(dir, { channel: "storage", region: formatted.value, signal: cancel.signal }),
      ),
      /job cancelled: cancelled before the start; a backup's snapshot was aborted/,
    );
    assert.deepEqual(await repoListing(`${dir}/repo`), before, "the repository is as it was");
    assert.equal(blocksHeld(formatted.value), 0, "no control block stays held");
    assert.equal(backupHostsRunning(), 0, "no Worker host stays up");
    const next = await runBackupJob(fsJob(dir, { channel: "storage", region: formatted.value }));
    assert.equal(next.files, 3, "the next backup on the repository succeeds");
  });
});
