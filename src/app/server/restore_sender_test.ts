import assert from "node:assert/strict";
import { runRestoreSender } from "./restore_sender.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import { quietSessionPair, withTempDir } from "../_testing.ts";

Deno.test("a restore server whose agent takes the manifest and then says nothing at all fails for the silent agent, before any I/O timeout", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.txt`, "some bytes");
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    // The sockets' I/O timeout is far away: only the machine's silence row can end this session.
    const { client, server, close } = await quietSessionPair({ client: 0, server: 50 });
    try {
      const failure = await runRestoreSender(server, {
        repo: `${dir}/repo`,
        snapshot: summary.snapshot,
      }).then(() => assert.fail("the restore ended with a silent agent"), (error) => error);
      assert.ok(failure instanceof SocketError, String(failure));
      assert.equal(failure.code, "ETIMEDOUT");
      assert.match(failure.message, /agent was silent for \d+ ms/);
      const begin = (await client.nextMessage("control")) as { type: string };
      assert.equal(begin.type, "restore-begin");
    } finally {
      await close();
    }
  });
});
