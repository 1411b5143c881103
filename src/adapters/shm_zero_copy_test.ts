import assert from "node:assert/strict";
import { SocketError } from "../core/dispatch/errors.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import type { Region } from "../core/stp/region.ts";
import { createStorageSockets, type StorageSockets } from "./shm.ts";
import { sharedArrayBufferRegions } from "./shm_region.ts";

const CONFIG: RegionConfig = {
  stgs: [{ id: 3, extentCount: 4, ephemeralPortMin: 40000, ephemeralPortMax: 40009 }],
  extentBytes: 4096,
  blockCount: 8,
  hostCount: 4,
  ioTimeoutMs: 2000,
  leaseMs: 2000,
  backlogMax: 4,
};

function region(): Region {
  const made = sharedArrayBufferRegions.create(CONFIG);
  if (!made.ok) throw new Error(made.message);
  return made.value;
}

async function code(promise: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof promise === "function" ? promise() : promise);
    return "resolved";
  } catch (error) {
    assert.ok(error instanceof SocketError, `a SocketError, got ${String(error)}`);
    return error.code;
  }
}

async function connected(r: Region): Promise<[StorageSockets, StorageSockets, number, number]> {
  const server = createStorageSockets({ region: r });
  const client = createStorageSockets({ region: r });
  const listener = await server.socket("storage");
  await server.bind(listener, { kind: "storage", stg: 3, port: 80 });
  await server.listen(listener, 1);
  const connector = await client.socket("storage");
  const [accepted] = await Promise.all([
    server.accept(listener),
    client.connect(connector, { kind: "storage", stg: 3, port: 80 }),
  ]);
  await server.close(listener);
  return [client, server, connector, accepted];
}

/** Sends `message` by reserve/commit (filling in place) and reads it by peek/release. */
async function zeroCopyTransfer(r: Region, message: Uint8Array, sendBytes: number) {
  const [client, server, connector, accepted] = await connected(r);
  const spans: number[] = [];
  const producer = (async () => {
    for (let at = 0; at < message.length;) {
      const view = await client.reserve(connector, Math.min(sendBytes, message.length - at));
      spans.push(view.length);
      view.set(message.subarray(at, at + view.length));
      client.commit(connector, view.length);
      at += view.length;
    }
    await client.close(connector);
  })();
  const received = new Uint8Array(message.length);
  let got = 0;
  for (let peeks = 0; peeks < 100_000; peeks++) {
    const view = await server.peek(accepted, 1500);
    if (view === null) break;
    received.set(view, got);
    got += view.length;
    server.release(accepted, view.length);
  }
  await producer;
  await server.close(accepted);
  await server.dispose();
  await client.dispose();
  return { received: received.subarray(0, got), spans };
}

Deno.test("reserve/commit and peek/release move bytes in place through the ring, across its wrap", async () => {
  const r = region();
  const message = new Uint8Array(5 * CONFIG.extentBytes + 123).map((_, i) => (i * 13) & 0xff);
  const { received, spans } = await zeroCopyTransfer(r, message, 3000);
  assert.deepEqual(received, message);
  assert.ok(spans.some((n) => n < 3000 && n > 0), `a span cut at the ring's end: ${spans}`);
});

Deno.test("a reserved view is the ring itself, not a copy", async () => {
  const r = region();
  const [client, server, connector, accepted] = await connected(r);
  const view = await client.reserve(connector, 16);
  assert.ok(view.buffer instanceof SharedArrayBuffer, "a view of the region's buffer");
  view.set([1, 2, 3]);
  client.commit(connector, 3);
  const peeked = await server.peek(accepted);
  assert.deepEqual([...peeked!], [1, 2, 3]);
  assert.equal(peeked!.buffer, view.buffer);
  server.release(accepted, 3);
  await server.dispose();
  await client.dispose();
});

Deno.test("reserve and peek are checked like send and recv: order, pending calls, bounds", async () => {
  const r = region();
  const [client, server, connector, accepted] = await connected(r);
  assert.equal(await code(() => client.commit(connector, 1)), "EINVAL", "commit without reserve");
  assert.equal(await code(() => server.release(accepted, 1)), "EINVAL", "release without peek");
  const view = await client.reserve(connector, 8);
  assert.equal(await code(client.reserve(connector, 8)), "EALREADY");
  assert.equal(await code(client.send(connector, new Uint8Array(1))), "EALREADY");
  assert.equal(await code(() => client.commit(connector, view.length + 1)), "EINVAL");
  client.commit(connector, 0); // gives the reservation up
  await client.send(connector, new Uint8Array([9]));
  assert.equal(await code(client.reserve(connector, 0)), "EINVAL");
  const listener = await server.socket("storage");
  assert.equal(await code(server.peek(listener)), "ENOTCONN");
  assert.deepEqual([...(await server.peek(accepted))!], [9]);
  assert.equal(await code(server.recv(accepted, new Uint8Array(1))), "EALREADY");
  server.release(accepted, 1);
  await client.close(connector);
  assert.equal(await server.peek(accepted), null);
  await server.dispose();
  await client.dispose();
});

Deno.test("a region without views or a wait still serves reserve and peek, through copies and polling", async () => {
  const r = region();
  const withoutView: Region = { memory: r.memory, layout: r.layout };
  const message = new Uint8Array(3 * CONFIG.extentBytes + 7).map((_, i) => (i * 5) & 0xff);
  const { received } = await zeroCopyTransfer(withoutView, message, 2500);
  assert.deepEqual(received, message);
});

Deno.test("a reserve with minBytes waits while a nearly full ring has less free, but takes a short span at the ring's end", async () => {
  const r = region();
  const [client, server, connector, accepted] = await connected(r);
  const ringBytes = CONFIG.extentBytes;
  await client.send(connector, new Uint8Array(ringBytes)); // the ring is full
  const release = async (bytes: number) => {
    const view = await server.peek(accepted, bytes);
    assert.equal(view?.length, bytes);
    server.release(accepted, bytes);
  };
  await release(100);
  let waited: Uint8Array | undefined;
  const reserving = client.reserve(connector, ringBytes, 1000).then((view) => (waited = view));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(waited, undefined, "100 free bytes are not the 1000 asked for");
  await release(1000);
  await reserving;
  assert.equal(waited!.length, 1100);
  client.commit(connector, 1100);
  await release(ringBytes - 1100); // the rest of the first send, up to the ring's end
  await release(1100);
  await client.send(connector, new Uint8Array(ringBytes - 1100 - 96)); // 96 before the end
  await release(ringBytes - 1100 - 96);
  const atEnd = await client.reserve(connector, ringBytes, 1000);
  assert.equal(atEnd.length, 96, "the span up to the ring's end, though short");
  client.commit(connector, 0);
  assert.equal((await client.reserve(connector, ringBytes)).length, 96);
  client.commit(connector, 0);
  await server.dispose();
  await client.dispose();
});
