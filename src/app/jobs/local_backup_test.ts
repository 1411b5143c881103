import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runLocalBackup } from "./local_backup.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { describeTree, gnuTarList, withTempDir, writeFileWith } from "../_testing.ts";

Deno.test("runLocalBackup() reports skipped entries with reasons and backs up the rest", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/src/a`, new Uint8Array(24 << 20)); // outruns the pack buffer
    await writeFileWith(`${dir}/src/z-goes-away`, "z");
    const fifo = await new Deno.Command("mkfifo", { args: [`${dir}/src/pipe`] }).output();
    assert.ok(fifo.success);
    let first = true;
    const sink = async () => {
      if (first) await Deno.remove(`${dir}/src/z-goes-away`);
      first = false;
    };
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo`, sink });
    assert.equal(summary.skipped, 2);
    assert.deepEqual(summary.skippedEntries.map((s) => s.path).sort(), ["pipe", "z-goes-away"]);
    assert.equal(summary.files, 1);
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/out`,
    });
    assert.deepEqual((await describeTree(`${dir}/out`)).map((e) => e.path), ["a"]);
  });
});

Deno.test({
  name: "runLocalBackup() skips a file it may not read (chmod 000)",
  ignore: Deno.uid() === 0, // root reads mode-000 files anyway; the vanished-file test covers the path
  fn: async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/src`);
      await writeFileWith(`${dir}/src/secret`, "s", 0o000);
      const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      assert.deepEqual(summary.skippedEntries, [{ path: "secret", reason: "permission denied" }]);
    });
  },
});

Deno.test("a repository snapshot is a tar GNU tar lists and extracts", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/d`, { recursive: true });
    await writeFileWith(`${dir}/src/d/ünï code -x`, crypto.getRandomValues(new Uint8Array(9000)));
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const tarPath = `${dir}/repo/snapshots/${snapshot}.tar`;
    assert.deepEqual(await gnuTarList(tarPath), ["d", "d/ünï code -x"]);
    await Deno.mkdir(`${dir}/x`);
    const x = await new Deno.Command("tar", { args: ["-xf", tarPath, "-C", `${dir}/x`] }).output();
    assert.ok(x.success);
    const files = (t: Awaited<ReturnType<typeof describeTree>>) =>
      t.filter((e) => e.type === "file");
    assert.deepEqual(
      files(await describeTree(`${dir}/x`)),
      files(await describeTree(`${dir}/src`)),
    );
  });
});

Deno.test("a SQLite database in use round-trips with integrity_check ok and the same rows", async () => {
  await withTempDir(async (dir) => {
    const db = new DatabaseSync(`${dir}/app.db`);
    db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);");
    const insert = db.prepare("INSERT INTO t(v, b) VALUES (?, ?)");
    for (let i = 0; i < 500; i++) {
      insert.run(`row ${i} ü`, crypto.getRandomValues(new Uint8Array(64)));
    }
    const rows = db.prepare("SELECT * FROM t ORDER BY id").all();
    try {
      const summary = await runLocalBackup({
        source: `${dir}/app.db`,
        repo: `${dir}/repo`,
        mode: "db",
      });
      assert.equal(summary.files, 1);
      await restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot: summary.snapshot,
        target: `${dir}/out`,
      });
    } finally {
      db.close();
    }
    const restored = new DatabaseSync(`${dir}/out/app.db`, { readOnly: true });
    try {
      const plain = (list: unknown[]) => list.map((row) => ({ ...row as object }));
      const check = plain(restored.prepare("PRAGMA integrity_check").all());
      assert.deepEqual(check, [{ integrity_check: "ok" }]);
      assert.deepEqual(plain(restored.prepare("SELECT * FROM t ORDER BY id").all()), plain(rows));
    } finally {
      restored.close();
    }
  });
});

Deno.test("runLocalBackup() names a missing source or database and writes nothing", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(runLocalBackup({ source: `${dir}/none`, repo: `${dir}/repo` }), {
      code: "not-found",
      message: /none/,
    });
    await assert.rejects(
      runLocalBackup({ source: dir, repo: `${dir}/repo2`, mode: "db", db: `${dir}/no.db` }),
      /no\.db/,
    );
    await Deno.writeTextFile(`${dir}/text.db`, "not sqlite at all");
    await assert.rejects(
      runLocalBackup({ source: dir, repo: `${dir}/repo3`, mode: "db", db: `${dir}/text.db` }),
      { code: "unreadable" },
    );
    assert.deepEqual((await describeTree(dir)).map((e) => e.path), ["text.db"]);
  });
});

Deno.test("a local backup leaves out a repository inside its source and says so", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.txt`, "alpha");
    const repo = `${dir}/src/repo`;
    const first = await runLocalBackup({ source: `${dir}/src`, repo });
    const second = await runLocalBackup({ source: `${dir}/src`, repo, incremental: true });
    assert.deepEqual(second.excluded, [{
      path: "repo",
      reason: "the repository this backup writes to",
    }]);
    assert.deepEqual([first.filesTotal, second.filesTotal, second.files], [1, 1, 0]);
    await assert.rejects(
      runLocalBackup({ source: `${dir}/src`, repo: `${dir}/src` }),
      /is the source itself/,
    );
  });
});
