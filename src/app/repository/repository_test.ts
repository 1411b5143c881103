import assert from "node:assert/strict";
import { RepositoryError } from "../errors.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import {
  initRepository,
  latestSnapshot,
  listSnapshotIds,
  MARKER_FILE,
  openRepository,
  readManifest,
  repoPaths,
  resolveSnapshot,
  STAGING_INFIX,
} from "./repository.ts";
import { dirname } from "node:path";
import { restoreSnapshot } from "./restore.ts";
import { beginSnapshot } from "./snapshot_writer.ts";
import { verifyRepository } from "./verify.ts";
import { describeTree, withTempDir, writeFileWith } from "../_testing.ts";

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
    // A writer killed between placing its archive and the commit point: the archive in
    // snapshots/ and its manifest, not yet renamed in, in tmp/.
    await Deno.writeTextFile(`${dir}/repo/snapshots/20240101T000000000Z-00000002.tar`, "orphan");
    await Deno.writeTextFile(
      `${dir}/repo/tmp/20240101T000000000Z-00000002.manifest.json.partial`,
      "{}",
    );
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

/** A full backup then an incremental one after a change: the chain A <- B. */
async function chainOfTwo(dir: string) {
  const source = await sampleSource(dir);
  const a = await runLocalBackup({ source, repo: `${dir}/repo` });
  await writeFileWith(`${source}/a`, "alpha, changed", 0o644, 1_700_000_000);
  const b = await runLocalBackup({ source, repo: `${dir}/repo`, incremental: true });
  assert.equal(b.parent, a.snapshot);
  await writeFileWith(`${source}/new.txt`, "added after B");
  return { source, a: a.snapshot, b: b.snapshot, repo: { path: `${dir}/repo` } };
}

async function truncate(path: string, keepBytes: number): Promise<void> {
  const file = await Deno.open(path, { write: true });
  await file.truncate(keepBytes);
  file.close();
}

/** An incremental backup over a damaged chain: full, says why, and restores to the source. */
async function expectFullBecause(dir: string, source: string, reason: RegExp) {
  const summary = await runLocalBackup({ source, repo: `${dir}/repo`, incremental: true });
  assert.equal(summary.parent, null, "a full backup, not one built on a broken chain");
  assert.match(summary.fullReason ?? "", reason);
  assert.equal(summary.filesTotal, summary.files, "every file archived again");
  await restoreSnapshot({ repo: `${dir}/repo`, snapshot: summary.snapshot, target: `${dir}/out` });
  assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(source));
}

Deno.test("an incremental over a cut-off parent manifest makes a full backup and says why", async () => {
  await withTempDir(async (dir) => {
    const { source, b, repo } = await chainOfTwo(dir);
    await truncate(repoPaths.manifest(repo, b), 100);
    await expectFullBecause(dir, source, new RegExp(`manifest of snapshot ${b} cannot be read`));
  });
});

Deno.test("an incremental whose grandparent manifest is cut off makes a full backup and says why", async () => {
  await withTempDir(async (dir) => {
    const { source, a, b, repo } = await chainOfTwo(dir);
    await truncate(repoPaths.manifest(repo, a), 100);
    await expectFullBecause(
      dir,
      source,
      new RegExp(`parent chain of ${b} is broken: the manifest of snapshot ${a} cannot be read`),
    );
  });
});

Deno.test("an incremental whose parent's archive was deleted makes a full backup and says why", async () => {
  await withTempDir(async (dir) => {
    const { source, b, repo } = await chainOfTwo(dir);
    await Deno.remove(repoPaths.archive(repo, b));
    await expectFullBecause(dir, source, new RegExp(`archive of snapshot ${b} is missing`));
  });
});

Deno.test("an incremental over a cut-off archive in the chain makes a full backup and says why", async () => {
  await withTempDir(async (dir) => {
    const { source, a, repo } = await chainOfTwo(dir);
    const size = (await Deno.stat(repoPaths.archive(repo, a))).size;
    await truncate(repoPaths.archive(repo, a), size - 512);
    await expectFullBecause(
      dir,
      source,
      new RegExp(`archive of snapshot ${a} has ${size - 512} bytes; its manifest records ${size}`),
    );
  });
});

Deno.test("an incremental over an intact chain builds on it and gives no full reason", async () => {
  await withTempDir(async (dir) => {
    const { source, b } = await chainOfTwo(dir);
    const c = await runLocalBackup({ source, repo: `${dir}/repo`, incremental: true });
    assert.deepEqual([c.parent, c.fullReason, c.files], [b, null, 1]);
    const first = await runLocalBackup({ source, repo: `${dir}/other`, incremental: true });
    assert.match(first.fullReason ?? "", /no earlier snapshot of .* in this repository/);
  });
});

Deno.test("latest with a source is the newest snapshot of that source; without one, of any source", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/one`);
    await Deno.mkdir(`${dir}/two`);
    const one = await runLocalBackup({ source: `${dir}/one`, repo: `${dir}/repo` });
    const two = await runLocalBackup({ source: `${dir}/two`, repo: `${dir}/repo` });
    const repo = await openRepository(`${dir}/repo`);
    assert.equal((await resolveSnapshot(repo, "latest")).id, two.snapshot);
    assert.equal((await resolveSnapshot(repo, "latest", `${dir}/one`)).id, one.snapshot);
    assert.equal((await resolveSnapshot(repo, "latest", `${dir}/two/`)).id, two.snapshot);
    await Deno.remove(`${dir}/one`); // a lost source is still named by its old path
    assert.equal((await resolveSnapshot(repo, "latest", `${dir}/one`)).id, one.snapshot);
    await assert.rejects(resolveSnapshot(repo, "latest", `${dir}/three`), {
      code: "unknown-snapshot",
      message: /no snapshot of source .*three/,
    });
    await assert.rejects(resolveSnapshot(repo, one.snapshot, `${dir}/two`), {
      code: "unknown-snapshot",
      message: new RegExp(`snapshot ${one.snapshot} is of source .*one, not .*two`),
    });
  });
});

Deno.test("a repository staged by a backup that died before renaming it in is removed by the next writer", async () => {
  await withTempDir(async (dir) => {
    const source = await sampleSource(dir);
    await runLocalBackup({ source, repo: `${dir}/repo` });
    // What initRepository leaves when killed between staging and the rename.
    const staged = `${dir}/repo.lanfree-init-${crypto.randomUUID()}`;
    await Deno.mkdir(`${staged}/snapshots`, { recursive: true });
    await Deno.writeTextFile(`${staged}/${MARKER_FILE}`, "{}");
    await Deno.mkdir(`${dir}/repo.lanfree-init-other-not-ours`); // not a staging name: kept
    await runLocalBackup({ source, repo: `${dir}/repo`, incremental: true });
    const beside = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(beside, ["repo", "repo.lanfree-init-other-not-ours", "src"]);
  });
});

/** Forgets a snapshot the way `forget` does: its manifest goes, its archive stays. */
async function removeManifest(repo: { path: string }, id: string): Promise<void> {
  await Deno.remove(repoPaths.manifest(repo, id));
}

Deno.test("a snapshot whose parent was forgotten still restores, verifies and is built on", async () => {
  await withTempDir(async (dir) => {
    const { source, a, b, repo } = await chainOfTwo(dir);
    await removeManifest(repo, a);
    await restoreSnapshot({ repo: repo.path, snapshot: b, target: `${dir}/out-b` });
    const report = await verifyRepository(repo.path);
    assert.deepEqual([report.ok, report.snapshots], [true, [b]]);
    const c = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.deepEqual([c.parent, c.fullReason, c.files], [b, null, 1]);
    await restoreSnapshot({ repo: repo.path, snapshot: c.snapshot, target: `${dir}/out-c` });
    assert.deepEqual(await describeTree(`${dir}/out-c`), await describeTree(source));
  });
});

Deno.test("a writer leaves a forgotten snapshot's archive alone: a kept snapshot may still need it", async () => {
  await withTempDir(async (dir) => {
    const { source, a, b, repo } = await chainOfTwo(dir);
    await removeManifest(repo, a);
    await runLocalBackup({ source, repo: repo.path });
    assert.ok((await Deno.stat(repoPaths.archive(repo, a))).isFile);
    await restoreSnapshot({ repo: repo.path, snapshot: b, target: `${dir}/out` });
  });
});

Deno.test("a creator whose staging directory was removed by another backup that created the repository first opens that repository", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/repo`;
    const original = Deno.writeTextFile;
    // The marker write of the staging directory is where the other backup gets in: it renames
    // its own repository into place and, under its lock, removes staging directories beside it.
    Deno.writeTextFile = async (file, data, options) => {
      if (String(file).includes(STAGING_INFIX)) {
        Deno.writeTextFile = original;
        await initRepository(path);
        await Deno.remove(dirname(String(file)), { recursive: true }); // as removeStale does
      }
      return await original(file, data, options);
    };
    try {
      const repo = await initRepository(path);
      assert.equal(repo.path, path);
    } finally {
      Deno.writeTextFile = original;
    }
    assert.deepEqual(await listSnapshotIds(await openRepository(path)), []);
    const names: string[] = [];
    for await (const item of Deno.readDir(dir)) names.push(item.name);
    assert.deepEqual(names, ["repo"], "no staging directory left");
  });
});
