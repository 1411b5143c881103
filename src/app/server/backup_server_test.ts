import assert from "node:assert/strict";
import { runBackupServer } from "./backup_server.ts";
import { Session } from "../hosts/session.ts";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { createRouter } from "../../core/dispatch/router.ts";
import { connectedPair } from "../_testing.ts";
import { SocketError } from "../../core/dispatch/errors.ts";

Deno.test("a server whose client says hello and then nothing at all fails for the silent client, before any I/O timeout", async () => {
  const repo = await Deno.makeTempDir({ prefix: "lanfree-silent-" });
  // The sockets' I/O timeout is far away: only the machine's silence row can end this session.
  const tcp = createTcpSockets({ ioTimeoutMs: 120_000 });
  const sockets = createRouter({ network: tcp, storage: tcp }); // no storage descriptor is made
  const [clientFd, serverFd] = await connectedPair(sockets, {
    kind: "network",
    host: "127.0.0.1",
    port: 0,
  });
  const one = (fd: number) => ({ control: fd, error: fd, data: fd });
  const client = new Session(sockets, one(clientFd), { keepaliveMs: 0 }); // sends none
  const server = new Session(sockets, one(serverFd), { keepaliveMs: 50 });
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
    client.close();
    server.close();
    for (const fd of [clientFd, serverFd]) await sockets.close(fd).catch(() => {});
    await Deno.remove(repo, { recursive: true });
  }
});
