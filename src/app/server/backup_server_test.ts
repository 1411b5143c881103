import assert from "node:assert/strict";
import { runBackupServer } from "./backup_server.ts";
import {
  copyTree,
  describeTree,
  quietSessionPair,
  withTempDir,
  writeFileWith,
} from "../_testing.ts";
import { runBackupClient } from "../agent/backup_client.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { initRepository } from "../repository/repository.ts";
import { vouchingRecord } from "../repository/_checked_record.ts";
import { SocketError } from "../../core/dispatch/errors.ts";

Deno.test("a server whose client says hello and then nothing at all fails for the silent client, before any I/O timeout", async () => {
  const repo = await Deno.makeTempDir({ prefix: "lanfree-silent-" });
  // The sockets' I/O timeout is far away: only the machine's silence row can end this session.
  const { client, server, close } = await quietSessionPair({ client: 0, server: 50 });
  try {
    await client.sendMessage("control", {
      type: "hello",
      mode: "fs",
      source: "/nowhere",
      sourceId: "silent-source",
      incremental: false,
    });
    const begin = client.nextMessage("control");
    const failure = await runBackupServer(server, { repo }).then(
      () => assert.fail("the backup succeeded with a silent client"),
      (error) => error,
    );
    assert.ok(failure instanceof SocketError, String(failure));
    assert.equal(failure.code, "ETIMEDOUT");
    assert.match(failure.message, /client was silent for \d+ ms/);
    assert.equal(((await begin) as { type: string }).type, "begin");
    const entries = await Array.fromAsync(Deno.readDir(`${repo}/snapshots`)).catch(() => []);
    assert.deepEqual(entries, [], "the aborted snapshot left nothing behind");
  } finally {
    await close();
    await Deno.remove(repo, { recursive: true });
  }
});

/** A tree with runs of unchanged entries: 3 directories of 20 files, a symlink, a hard link. */
async function makeRunsTree(src: string): Promise<void> {
  for (const dir of ["a", "b", "c"]) {
    await Deno.mkdir(`${src}/${dir}`, { recursive: true });
    for (let i = 0; i < 20; i++) {
      await writeFileWith(`${src}/${dir}/f${String(i).padStart(2, "0")}`, `${dir}${i}\n`);
    }
  }
  await Deno.symlink("a/f00", `${src}/link`);
  await Deno.link(`${src}/b/f01`, `${src}/c/hard`);
}

/** Changes in the middle of the runs: one touched, one gone, one added, one retargeted. */
async function changeRunsTree(src: string): Promise<void> {
  await writeFileWith(`${src}/a/f05`, "changed\n", 0o644, 1_600_000_100);
  await Deno.remove(`${src}/b/f10`);
  await writeFileWith(`${src}/b/f10x`, "added\n");
  await Deno.remove(`${src}/link`);
  await Deno.symlink("c/f00", `${src}/link`);
}

/** One backup over a real TCP session; its snapshot id and the bytes the client sent. */
async function backupOverSession(
  repo: string,
  source: string,
  peers: { runLines?: boolean; offerRunLines?: boolean },
): Promise<{ id: string; sentBytes: number; entryCount: number }> {
  const { client, server, close } = await quietSessionPair({ client: 100, server: 100 });
  try {
    const [served, sent] = await Promise.all([
      runBackupServer(server, { repo, offerRunLines: peers.offerRunLines }),
      runBackupClient(client, {
        mode: "fs",
        source,
        incremental: true,
        dataChannel: "network",
        runLines: peers.runLines,
      }),
    ]);
    assert.equal(served.manifest.id, sent.snapshotId);
    return {
      id: sent.snapshotId,
      sentBytes: client.bytes.network,
      entryCount: served.manifest.entryCount,
    };
  } finally {
    await close();
  }
}

/** A manifest file's entry and deleted lines, its own id (the data of new files) as "ID". */
async function manifestBody(repo: string, id: string): Promise<string[]> {
  const lines = (await Deno.readTextFile(`${repo}/snapshots/${id}.manifest.json`)).split("\n");
  return lines.slice(1, -2).map((line) => line.replaceAll(id, "ID"));
}

Deno.test("over a real TCP session an incremental sends run lines to a server that offers them and plain lines otherwise, each way committing the same manifest, and its restore is the tree", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    await makeRunsTree(src);
    const repos = ["new-new", "old-client", "old-server"].map((name) => `${dir}/${name}`);
    await backupOverSession(repos[0]!, src, {});
    for (const repo of repos.slice(1)) await copyTree(repos[0]!, repo); // one parent for all
    await changeRunsTree(src);
    const [runs, oldClient, oldServer] = [
      await backupOverSession(repos[0]!, src, {}),
      await backupOverSession(repos[1]!, src, { runLines: false }),
      await backupOverSession(repos[2]!, src, { offerRunLines: false }),
    ];
    assert.equal(runs.entryCount, 65); // 3 dirs, 60 files (one gone, one added), a link, a symlink
    const body = await manifestBody(repos[0]!, runs.id);
    assert.deepEqual(await manifestBody(repos[1]!, oldClient.id), body);
    assert.deepEqual(await manifestBody(repos[2]!, oldServer.id), body);
    // The same archive each way (keepalives and progress vary a little): runs save lines.
    const plainBytes = Math.min(oldClient.sentBytes, oldServer.sentBytes);
    assert.ok(
      runs.sentBytes < plainBytes - 5_000,
      `run lines sent ${runs.sentBytes} bytes, plain lines ${plainBytes}`,
    );
    const target = `${dir}/restored`;
    await restoreSnapshot({ repo: repos[0]!, snapshot: runs.id, target });
    assert.deepEqual(await describeTree(target), await describeTree(src));
  });
});

Deno.test("a no-change incremental over a real TCP session sends one run line and commits the parent's entries, with a checked record that vouches for them, and restores the tree", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    const repo = `${dir}/repo`;
    await makeRunsTree(src);
    await backupOverSession(repo, src, {});
    await changeRunsTree(src);
    const changed = await backupOverSession(repo, src, {});
    const noChange = await backupOverSession(repo, src, {});
    const plain = await backupOverSession(repo, src, { runLines: false });
    assert.ok(
      noChange.sentBytes < plain.sentBytes - 10_000,
      `one run line sent ${noChange.sentBytes} bytes, plain lines ${plain.sentBytes}`,
    );
    const entryLines = async (id: string) => {
      const file = (await Deno.readTextFile(`${repo}/snapshots/${id}.manifest.json`)).split("\n");
      return file.slice(1, file.findIndex((line) => line.startsWith("]")));
    };
    assert.deepEqual(await entryLines(noChange.id), await entryLines(changed.id));
    assert.deepEqual(await entryLines(plain.id), await entryLines(changed.id));
    const opened = await initRepository(repo);
    const record = await vouchingRecord(opened, noChange.id);
    assert.ok(record !== undefined, "the copy's checked record vouches for its manifest");
    assert.deepEqual(record.archives, (await vouchingRecord(opened, changed.id))!.archives);
    const target = `${dir}/restored`;
    await restoreSnapshot({ repo, snapshot: noChange.id, target });
    assert.deepEqual(await describeTree(target), await describeTree(src));
  });
});
