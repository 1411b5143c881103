import assert from "node:assert/strict";
import { runLocalBackup } from "./local_backup.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { describeTree, gnuTarList, withTempDir, writeFileWith } from "../_testing.ts";

/** A fixed past time (seconds), so only the changes the test makes differ. */
const PAST_S = 1_600_000_000;

/** The members of a snapshot's archive that are not directories, sorted. */
async function archivedNonDirs(repo: string, snapshot: string): Promise<string[]> {
  const members = await gnuTarList(`${repo}/snapshots/${snapshot}.tar`);
  return members.filter((m) => !m.endsWith("/")).sort();
}

async function makeSource(src: string): Promise<void> {
  await Deno.mkdir(src);
  for (const name of ["same", "touched", "grown", "chmod", "becomes-link", "gone", "old-name"]) {
    await writeFileWith(`${src}/${name}.txt`, `content of ${name}\n`, 0o644, PAST_S);
  }
  await Deno.symlink("same.txt", `${src}/retargeted`);
}

/** One change of every kind the incremental rule knows, then the parent directory's time back. */
async function changeEveryKind(src: string): Promise<void> {
  await Deno.utime(`${src}/touched.txt`, PAST_S, PAST_S + 60);
  await writeFileWith(`${src}/grown.txt`, "content of grown, longer now\n", 0o644, PAST_S);
  await Deno.chmod(`${src}/chmod.txt`, 0o600);
  await Deno.remove(`${src}/becomes-link.txt`);
  await Deno.symlink("same.txt", `${src}/becomes-link.txt`);
  await Deno.remove(`${src}/gone.txt`);
  await Deno.rename(`${src}/old-name.txt`, `${src}/new-name.txt`);
  await writeFileWith(`${src}/added.txt`, "new\n", 0o644, PAST_S);
  await Deno.remove(`${src}/retargeted`);
  await Deno.symlink("grown.txt", `${src}/retargeted`);
}

Deno.test("an incremental after changes of every kind archives exactly the changed entries and restores the new tree", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    const repo = `${dir}/repo`;
    await makeSource(src);
    const full = await runLocalBackup({ source: src, repo });
    assert.equal(full.files, 7);
    await changeEveryKind(src);
    const incremental = await runLocalBackup({ source: src, repo, incremental: true });
    assert.equal(incremental.parent, full.snapshot);
    assert.deepEqual(await archivedNonDirs(repo, incremental.snapshot), [
      "added.txt",
      "becomes-link.txt",
      "chmod.txt",
      "grown.txt",
      "new-name.txt",
      "retargeted",
      "touched.txt",
    ]);
    assert.equal(incremental.files, 5); // regular files re-read: the two symlinks hold no data
    assert.equal(incremental.deleted, 2); // gone.txt and old-name.txt
    assert.equal(incremental.filesTotal, 6); // same, touched, grown, chmod, new-name, added
    await restoreSnapshot({ repo, snapshot: incremental.snapshot, target: `${dir}/out` });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(src));
  });
});

Deno.test("an incremental with no change archives no file and keeps every entry", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    const repo = `${dir}/repo`;
    await makeSource(src);
    await runLocalBackup({ source: src, repo });
    const noop = await runLocalBackup({ source: src, repo, incremental: true });
    assert.deepEqual(await archivedNonDirs(repo, noop.snapshot), []);
    assert.equal(noop.files, 0);
    assert.equal(noop.deleted, 0);
    assert.equal(noop.filesTotal, 7);
  });
});
