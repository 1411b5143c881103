import assert from "node:assert/strict";
import { runBackupServer } from "./backup_server.ts";
import { quietSessionPair } from "../_testing.ts";
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
