import assert from "node:assert/strict";
import { RepositoryError } from "./errors.ts";
import { runLocalBackup } from "./local_backup.ts";
import {
  initRepository,
  latestSnapshot,
  listSnapshotIds,
  MARKER_FILE,
  openRepository,
  readManifest,
  resolveSnapshot,
} from "./repository.ts";
import { beginSnapshot } from "./snapshot_writer.ts";
import { describeTree, withTempDir, writeFileWith } from "./_testing.ts";

/** Every file's path, content and mtime; directories by path (their mtimes move with temp files). */
async function repoState(repo: string) {
  return (await describeTree(repo)).map((e) => (e.type === "dir" ? { ...e, mtimeMs: 0 } : e));
}

async function sampleSource(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
  await writeFileWith(`${dir}/src/a`, "alpha");
  for (let i = 0; i < 4; i++) {
    await writeFileWith(`${dir}/src/sub/big${i}`, new Uint8Array(2 << 20).fill(i));
  }
  return `${dir}/src`;
}

Deno.test("openRepository() names the directory for each kind of bad repository", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(openRepository(`${dir}/none`), { code: "not-found", message: /none/ });
    await assert.rejects(openRepository(dir), {
      code: "not-a-repository",
      message: new RegExp(dir),
    });
    await Deno.writeTextFile(`${dir}/${MARKER_FILE}`, "{not json");
    await assert.rejects(openRepository(dir), { code: "corrupt", message: /not valid JSON/ });
    await Deno.writeTextFile(
      `${dir}/${MARKER_FILE}`,
      JSON.stringify({ format: "restic", version: 2 }),
    );
    await assert.rejects(openRepository(dir), {
      code: "other-format",
      message: /restic version 2/,
    });
    await assert.rejects(
      initRepository(dir),
      RepositoryError,
      "init refuses a non-empty foreign directory",
    );
  });
});

Deno.test("a committed snapshot is listed, readable and found as the latest of its source", async () => {
  await withTempDir(async (dir) => {
    const source = await sampleSource(dir);
    const first = await runLocalBackup({ source, repo: `${dir}/repo` });
    const second = await runLocalBackup({ source, repo: `${dir}/repo`, incremental: true });
    const repo = await openRepository(`${dir}/repo`);
    assert.deepEqual(await listSnapshotIds(repo), [first.snapshot, second.snapshot]);
    assert.equal((await latestSnapshot(repo, await Deno.realPath(source)))?.id, second.snapshot);
    assert.equal(await latestSnapshot(repo, "/elsewhere"), null);
    assert.equal((await resolveSnapshot(repo, "latest")).id, second.snapshot);
    assert.equal((await readManifest(repo, second.snapshot)).parent, first.snapshot);
    await assert.rejects(readManifest(repo, "20000101T000000000Z-00000000"), {
      code: "unknown-snapshot",
    });
    await assert.rejects(readManifest(repo, "../../etc/passwd"), { code: "unknown-snapshot" });
  });
});

Deno.test("a backup that fails mid-stream leaves the repository byte-for-byte unchanged", async () => {
  await withTempDir(async (dir) => {
    const source = await sampleSource(dir);
    await runLocalBackup({ source, repo: `${dir}/repo` });
    const before = await repoState(`${dir}/repo`);
    let chunks = 0;
    const sink = () =>
      ++chunks === 3 ? Promise.reject(new Error("client host terminated")) : Promise.resolve();
    await assert.rejects(
      runLocalBackup({ source, repo: `${dir}/repo`, sink }),
      /client host terminated/,
    );
    assert.deepEqual(await repoState(`${dir}/repo`), before);
  });
});

Deno.test("an aborted writer and a refused commit leave the repository unchanged", async () => {
  await withTempDir(async (dir) => {
    const repo = await initRepository(`${dir}/repo`);
    const before = await repoState(repo.path);
    const writer = await beginSnapshot(repo);
    await writer.write(new Uint8Array(1024));
    await assert.rejects(writer.commit({ not: "a manifest" }), { code: "bad-commit" });
    assert.deepEqual(await repoState(repo.path), before);
    await assert.rejects(writer.write(new Uint8Array(1)), { code: "closed" });
    const second = await beginSnapshot(repo, { lockWaitMs: 0 });
    await second.abort();
    await second.abort();
    assert.deepEqual(await repoState(repo.path), before);
  });
});

Deno.test("leftovers of an interrupted writer are invisible and cleaned by the next writer", async () => {
  await withTempDir(async (dir) => {
    const repo = await initRepository(`${dir}/repo`);
    await Deno.writeTextFile(`${dir}/repo/tmp/20240101T000000000Z-00000001.tar.partial`, "junk");
    await Deno.writeTextFile(`${dir}/repo/snapshots/20240101T000000000Z-00000001.tar`, "orphan");
    assert.deepEqual(await listSnapshotIds(repo), []);
    const writer = await beginSnapshot(repo);
    await writer.abort();
    assert.deepEqual((await describeTree(repo.path)).map((e) => e.path), [
      MARKER_FILE,
      "snapshots",
      "tmp",
    ]);
  });
});

Deno.test("two backups into one repository at once both succeed, one after the other", async () => {
  await withTempDir(async (dir) => {
    const source = await sampleSource(dir);
    await initRepository(`${dir}/repo`);
    const [a, b] = await Promise.all([
      runLocalBackup({ source, repo: `${dir}/repo` }),
      runLocalBackup({ source, repo: `${dir}/repo` }),
    ]);
    assert.notEqual(a.snapshot, b.snapshot);
    assert.equal((await listSnapshotIds(await openRepository(`${dir}/repo`))).length, 2);
  });
});

Deno.test("a second writer that cannot wait long enough fails with a locked error", async () => {
  await withTempDir(async (dir) => {
    const repo = await initRepository(`${dir}/repo`);
    const first = await beginSnapshot(repo);
    try {
      await assert.rejects(beginSnapshot(repo, { lockWaitMs: 100 }), {
        code: "locked",
        message: /locked by another backup/,
      });
    } finally {
      await first.abort();
    }
    const third = await beginSnapshot(repo, { lockWaitMs: 0 });
    await third.abort();
  });
});
