import assert from "node:assert/strict";
import { runBackupClient } from "./backup_client.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import { quietSessionPair } from "../_testing.ts";

Deno.test("a client whose server says begin and then nothing at all fails for the silent server, before any I/O timeout", async () => {
  const source = await Deno.makeTempDir({ prefix: "lanfree-silent-src-" });
  await Deno.writeTextFile(`${source}/a.txt`, "some bytes");
  // The sockets' I/O timeout is far away: only the machine's silence row can end this session.
  const { client, server, close } = await quietSessionPair({ client: 50, server: 0 });
  try {
    const running = runBackupClient(client, {
      mode: "fs",
      source,
      incremental: false,
      dataChannel: "network",
    }).then(() => assert.fail("the backup succeeded with a silent server"), (error) => error);
    const hello = (await server.nextMessage("control")) as { type: string };
    assert.equal(hello.type, "hello");
    await server.sendMessage("control", { type: "begin", snapshotId: "s1", hasParent: false });
    const failure = await running;
    assert.ok(failure instanceof SocketError, String(failure));
    assert.equal(failure.code, "ETIMEDOUT");
    assert.match(failure.message, /server was silent for \d+ ms/);
  } finally {
    await close();
    await Deno.remove(source, { recursive: true });
  }
});
