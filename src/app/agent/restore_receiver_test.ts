import assert from "node:assert/strict";
import { type RestoreReceiverOptions, runRestoreReceiver } from "./restore_receiver.ts";
import { runRestoreSender } from "../server/restore_sender.ts";
import { IncompleteRestore } from "../repository/restore.ts";
import { RestoreError } from "../errors.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { openRepository, resolveSnapshot } from "../repository/repository.ts";
import { splitIntoParts } from "../../core/backup/protocol.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import { quietSessionPair, withTempDir } from "../_testing.ts";
import type { Session } from "../hosts/session.ts";

/** A snapshot of one small file, and its manifest as a server would send it. */
async function oneFileSnapshot(dir: string) {
  await Deno.mkdir(`${dir}/src`);
  await Deno.writeTextFile(`${dir}/src/a.txt`, "some bytes");
  const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
  const repo = await openRepository(`${dir}/repo`);
  return await resolveSnapshot(repo, summary.snapshot);
}

/** Sends `restore-begin` and the manifest's parts, as the server does. */
async function sendManifest(server: Session, manifest: { id: string }): Promise<void> {
  await server.sendMessage("control", { type: "restore-begin", snapshot: manifest.id });
  for (const part of splitIntoParts("manifest", manifest)) {
    await server.sendMessage("control", part);
  }
}

/** The receiver's outcome, or a failure of the test if it takes longer than `boundMs`. */
async function outcomeWithin(work: Promise<unknown>, boundMs: number): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the receiver neither ended nor failed in ${boundMs} ms`)),
      boundMs,
    );
  });
  try {
    return await Promise.race([work.then(() => "ended", (error) => error), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs a receiver against a hand-driven server over TCP on 127.0.0.1 whose sockets' I/O timeout
 * is far away (120 s), so only the machine's own rows can end a quiet session: the server sends
 * the manifest, `serve` does the rest, and the receiver's outcome must come within 20 s.
 */
async function receiverOutcome(serve: (server: Session) => Promise<void>): Promise<unknown> {
  return await withTempDir(async (dir) => {
    const manifest = await oneFileSnapshot(dir);
    const { client, server, close } = await quietSessionPair({ client: 50, server: 0 });
    try {
      await sendManifest(server, manifest);
      const receiving = runRestoreReceiver(client, { target: `${dir}/out` });
      await serve(server);
      return await outcomeWithin(receiving, 20_000);
    } finally {
      await close();
    }
  });
}

Deno.test("an agent whose server sends the manifest and then nothing at all fails for the silent server, before any I/O timeout", async () => {
  const failure = await receiverOutcome(async () => {});
  assert.ok(failure instanceof SocketError, String(failure));
  assert.equal(failure.code, "ETIMEDOUT");
  assert.match(failure.message, /server was silent for \d+ ms/);
});

Deno.test("an agent fails at once with the server's reason when the server reports its failure on control mid-restore and stays connected", async () => {
  const failure = await receiverOutcome(async (server) => {
    await server.nextMessage("control"); // the agent's member request
    await server.sendMessage("control", { type: "failed", message: "EIO reading the archive" });
  });
  assert.ok(failure instanceof Error, String(failure));
  assert.equal(failure.name, "PeerFailedError");
  assert.match(failure.message, /server failed: EIO reading the archive/);
});

/**
 * A snapshot of a.txt, b.txt and c.txt restored by the real sender and receiver over TCP on
 * 127.0.0.1 into `dir/out`, with `hooks`; returns the receiver's outcome (its summary or error),
 * the sender's, and the names in the target.
 */
async function restoreThree(hooks: RestoreReceiverOptions["hooks"]) {
  return await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    for (const name of ["a", "b", "c"]) {
      await Deno.writeTextFile(`${dir}/src/${name}.txt`, `the bytes of ${name}`.repeat(100));
    }
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const { client, server, close } = await quietSessionPair({ client: 50, server: 50 });
    try {
      const [sent, received] = await Promise.all([
        runRestoreSender(server, { repo: `${dir}/repo`, snapshot: summary.snapshot }).then(
          (result) => result,
          (error) => error,
        ),
        // A failing agent tells the server why, as the job's tell does.
        runRestoreReceiver(client, { target: `${dir}/out`, hooks }).catch(async (error) => {
          await client.sendMessage("control", { type: "failed", message: String(error.message) });
          return error;
        }),
      ]);
      const restored = await Array.fromAsync(Deno.readDir(`${dir}/out`)).catch(() => []);
      return { sent, received, restored: restored.map((e) => e.name).sort() };
    } finally {
      await close();
    }
  });
}

Deno.test("a file the target refuses is listed, the rest of its member is read past, and the other files are restored over the session", async () => {
  const { sent, received, restored } = await restoreThree({
    beforeCreate(path) {
      if (!path.endsWith("b.txt")) return Promise.resolve();
      return Promise.reject(new RestoreError("write-failed", `${path}: EACCES (the test's hook)`));
    },
  });
  assert.ok(received instanceof IncompleteRestore, String(received));
  assert.deepEqual(received.summary.problems.map((p) => p.path), ["b.txt"]);
  assert.match(received.summary.problems[0]!.message, /EACCES \(the test's hook\)/);
  assert.deepEqual(restored, ["a.txt", "c.txt"]);
  assert.equal(sent.members, 3, "the server streamed every member and was done");
});

Deno.test("a write failure that is no file's problem fails the restore with that error, and the server with the agent's account", async () => {
  const bug = new TypeError("not a RestoreError: a bug in the writer");
  const { sent, received } = await restoreThree({
    beforeCreate: (path) => path.endsWith("b.txt") ? Promise.reject(bug) : Promise.resolve(),
  });
  assert.equal(received, bug);
  assert.ok(sent instanceof Error, String(sent));
  assert.equal(sent.name, "PeerFailedError");
  assert.match(sent.message, /client failed: not a RestoreError: a bug in the writer/);
});
