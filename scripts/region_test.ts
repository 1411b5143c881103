import assert from "node:assert/strict";
import { readWholeFile, unlinkFile, writeNewFile } from "../src/adapters/_libc_files.ts";
import { parseBytes, parseRegionArgs, parseStg, UsageError } from "./region.ts";
import { region, REGION_FLAGS, REGION_SCRIPT, withShmDirectory } from "./_region_testing.ts";
import { openRegionFile } from "../src/adapters/region_file.ts";
import { createStorageSockets } from "../src/adapters/shm.ts";
import type { SocketError } from "../src/core/dispatch/errors.ts";
import { F } from "../src/core/stp/block.ts";
import { blockWord } from "../src/core/stp/layout.ts";

const GEOMETRY = [
  "--stg",
  "1:4:40000-40099",
  "--stg",
  "2:6:41000-41009",
  "--extent-bytes",
  "64KiB",
];

Deno.test("region arguments: sizes, STGs, commands and paths parse or fail with one clear line", () => {
  assert.equal(parseBytes("8MiB", "x"), 8 * 1024 * 1024);
  assert.equal(parseBytes("4096", "x"), 4096);
  assert.equal(parseBytes("1GiB", "x"), 1024 ** 3);
  assert.throws(() => parseBytes("lots", "--bytes"), UsageError);
  assert.deepEqual(parseStg("2:16:40000-40100"), {
    id: 2,
    extentCount: 16,
    ephemeralPortMin: 40000,
    ephemeralPortMax: 40100,
  });
  assert.throws(() => parseStg("2:16"), /ID:EXTENTS:PORTMIN-PORTMAX/);
  assert.equal(parseRegionArgs(["show", "/x"]).path, "/x");
  assert.equal(parseRegionArgs(["create"]).path, "/dev/shm/lanfree/region");
  assert.throws(() => parseRegionArgs(["explode"]), /unknown command explode/);
  assert.throws(() => parseRegionArgs(["show", "/x", "--path", "/y"]), /once/);
});

Deno.test("region create, show and destroy a region file, as a user would", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    const created = await region(["create", "--path", path, ...GEOMETRY, "--hosts", "3"]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(
      created.stdout,
      /STGs\n {2}1: 4 extents \(0 used, 4 free\), 256 KiB, ports 40000-40099/,
    );
    const again = await region(["create", "--path", path, ...GEOMETRY]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; refusing to replace it/);
    const shown = await region(["show", path, "--json"]);
    assert.equal(shown.code, 0, shown.stderr);
    const report = JSON.parse(shown.stdout);
    assert.equal(report.path, path);
    assert.match(report.regionId, /^[0-9a-f-]{36}$/);
    assert.deepEqual(report.stgs.map((s: { id: number }) => s.id), [1, 2]);
    assert.equal(report.stgs[1].lengthBytes, 6 * 65536);
    assert.equal(report.hosts.length, 3);
    assert.equal(report.blocksByState.free, 64);
    const destroyed = await region(["destroy", path]);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    return [];
  });
});

Deno.test("region show on a file that is no region, or truncated, names it in one line and leaves it alone", async () => {
  await withShmDirectory(async (directory) => {
    const notes = `${directory}/notes`;
    const text = new TextEncoder().encode("shopping list\n".repeat(40));
    writeNewFile(notes, text);
    for (const command of ["show", "destroy"]) {
      const result = await region([command, notes, "--force"]);
      assert.equal(result.code, 1);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`region file ${notes}: not a lanfree region`));
    }
    assert.deepEqual(readWholeFile(notes), text);
    const path = `${directory}/r`;
    assert.equal((await region(["create", "--path", path, ...GEOMETRY])).code, 0);
    const whole = readWholeFile(path);
    unlinkFile(path);
    writeNewFile(path, whole.subarray(0, whole.length - 65536));
    const truncated = await region(["show", path]);
    assert.equal(truncated.code, 1);
    assert.match(truncated.stderr, /bytes, but its header describes a region of \d+ bytes/);
    return ["notes", "r"];
  });
});

Deno.test("region recv and send move stdin to stdout between two processes, with matching SHA-256", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    assert.equal((await region(["create", "--path", path, ...GEOMETRY])).code, 0);
    const receiver = new Deno.Command(Deno.execPath(), {
      args: ["run", ...REGION_FLAGS, REGION_SCRIPT, "recv", path, "--port", "7000", "--json"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(receiver.stdout).arrayBuffer(); // read while it is written
    const events = receiver.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const first = await events.read();
    assert.match(first.value ?? "", /"event":"listening"/);
    const message = new Uint8Array(1_000_003).map((_, i) => (i * 7 + 3) & 0xff);
    const sent = await region(["send", path, "--port", "7000", "--json"], message);
    assert.equal(sent.code, 0, sent.stderr);
    let rest = "";
    for (let part = await events.read(); !part.done; part = await events.read()) rest += part.value;
    assert.equal((await receiver.status).code, 0, rest);
    assert.deepEqual(new Uint8Array(await stdout), message);
    const sentDone = JSON.parse(sent.stderr.trim().split("\n").at(-1)!);
    const receivedDone = JSON.parse(rest.trim().split("\n").at(-1)!);
    assert.equal(receivedDone.sha256, sentDone.sha256);
    assert.equal(receivedDone.bytes, message.length);
    const refused = await region(["send", path, "--port", "7001", "--bytes", "1"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /nobody listens on stg 1 port 7001/);
    const shown = JSON.parse((await region(["show", path, "--json"])).stdout);
    assert.deepEqual(shown.blocks, [], "every block was given back");
    assert.ok(shown.hosts.every((h: { status: string }) => h.status === "free"));
    return ["r"];
  });
});

Deno.test("a host whose ring counter goes backwards is fenced, and region show says by whom and why", async () => {
  await withShmDirectory(async (directory) => {
    const path = `${directory}/r`;
    const created = await region(["create", "--path", path, ...GEOMETRY, "--hosts", "3"]);
    assert.equal(created.code, 0, created.stderr);
    const file = openRegionFile(path);
    const [server, client] = [
      createStorageSockets({ region: file }),
      createStorageSockets({ region: file }),
    ];
    try {
      const listener = await server.socket("storage");
      await server.bind(listener, { kind: "storage", stg: 1, port: 40001 });
      await server.listen(listener, 1);
      const connector = await client.socket("storage");
      const [accepted] = await Promise.all([
        server.accept(listener),
        client.connect(connector, { kind: "storage", stg: 1, port: 40001 }),
      ]);
      await client.send(connector, new Uint8Array(100));
      assert.equal(await server.recv(accepted, new Uint8Array(10)), 10);
      // The client's process "misbehaves": its txTail goes back from 100 to 50.
      const block = client.blockOf(connector).index;
      file.memory.store(blockWord(file.layout, block, F.txTail), 50);
      file.memory.store(blockWord(file.layout, 60, F.state), 13); // and a block's state: garbage
      await assert.rejects(
        server.recv(accepted, new Uint8Array(10)),
        (error: SocketError) =>
          error.code === "EPROTO" &&
          /control block \d+ txTail \(word \d+\) is 50/.test(error.message),
      );
      await assert.rejects(
        client.socket("storage"),
        (error: SocketError) =>
          error.code === "ECONNRESET" && /fenced by host 1/.test(error.message),
      );
      const shown = await region(["show", path]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(
        shown.stdout,
        new RegExp(
          `2: fenced, pid \\d+, incarnation 1, .*\\n +fenced \\(incarnation 1\\) by host 1: its ` +
            `ring's txTail moved backwards or past the ring: control block ${block} txTail ` +
            `\\(word \\d+\\) was 50`,
        ),
      );
      assert.match(shown.stdout, /#60 state 13, owner host 0, generation 0; corrupt: state 13 is/);
    } finally {
      await server.dispose();
      await client.dispose();
      file.close();
      await file.closed;
    }
    return ["r"];
  });
});
