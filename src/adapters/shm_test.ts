import assert from "node:assert/strict";
import { SocketError } from "../core/dispatch/errors.ts";
import { STORAGE_FD_MIN } from "../core/dispatch/descriptor.ts";
import { attachRegion, formatRegion } from "../core/stp/region.ts";
import { HOST, hostWord, type RegionConfig } from "../core/stp/layout.ts";
import { regionUsage } from "../core/stp/usage.ts";
import { heartbeatOf } from "../core/stp/hosts.ts";
import { createStorageSockets, type StorageSockets } from "./shm.ts";
import { atomicsMemory } from "./shm_memory.ts";

const CONFIG: RegionConfig = {
  stgs: [{ id: 3, extentCount: 4, ephemeralPortMin: 40000, ephemeralPortMax: 40009 }],
  extentBytes: 4096,
  blockCount: 8,
  hostCount: 4,
  ioTimeoutMs: 300,
  leaseMs: 2000,
  backlogMax: 4,
};

function region(config = CONFIG): SharedArrayBuffer {
  const made = formatRegion(config, crypto.randomUUID());
  if (!made.ok) throw new Error(made.message);
  return made.value;
}

function usage(buffer: SharedArrayBuffer) {
  const layout = attachRegion(buffer);
  if (!layout.ok) throw new Error(layout.message);
  return regionUsage(atomicsMemory(buffer).memory, layout.value);
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    assert.ok(error instanceof SocketError, `a SocketError, got ${String(error)}`);
    return error.code;
  }
}

async function pair(server: StorageSockets, client: StorageSockets, port: number) {
  const listener = await server.socket("storage");
  await server.bind(listener, { kind: "storage", stg: 3, port });
  await server.listen(listener, 2);
  const connector = await client.socket("storage");
  const [accepted] = await Promise.all([
    server.accept(listener),
    client.connect(connector, { kind: "storage", stg: 3, port }),
  ]);
  return { listener, connector, accepted };
}

async function readAll(
  sockets: StorageSockets,
  fd: number,
  chunkBytes: number,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const into = new Uint8Array(chunkBytes);
  for (let i = 0; i < 1_000_000; i++) {
    const n = await sockets.recv(fd, into);
    if (n === null) break;
    parts.push(into.slice(0, n));
  }
  const all = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

Deno.test("two hosts on one region connect, exchange bytes, and leave the region as formatted", async () => {
  const buffer = region();
  const server = createStorageSockets({ region: buffer });
  const client = createStorageSockets({ region: buffer });
  const { listener, connector, accepted } = await pair(server, client, 700);
  assert.ok(accepted >= STORAGE_FD_MIN && connector >= STORAGE_FD_MIN);
  assert.deepEqual(await server.getsockname(accepted), { kind: "storage", stg: 3, port: 700 });
  const local = await client.getsockname(connector);
  assert.ok(local.port >= 40000 && local.port <= 40009);
  const message = new Uint8Array(10_000).map((_, i) => i * 7);
  const [received] = await Promise.all([
    readAll(server, accepted, 3000),
    client.send(connector, message).then(() => client.close(connector)),
  ]);
  assert.deepEqual(received, message);
  await server.send(accepted, new Uint8Array([1])).then(
    () => assert.fail("send after the peer closed must fail"),
    (error) => assert.equal(error.code, "EPIPE"),
  );
  await server.close(accepted);
  await server.close(listener);
  await server.dispose();
  await client.dispose();
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
});

Deno.test("storage sockets reject calls out of order like every socket kind", async () => {
  const host = createStorageSockets({ region: region() });
  const fd = await host.socket("storage");
  assert.equal(await code(host.send(fd, new Uint8Array(1))), "ENOTCONN");
  assert.equal(await code(host.listen(fd, 1)), "EINVAL");
  assert.equal(await code(host.socket("network")), "EAFNOSUPPORT");
  assert.equal(await code(host.bind(fd, { kind: "storage", stg: 99, port: 5 })), "EADDRNOTAVAIL");
  await host.close(fd);
  assert.equal(await code(host.close(fd)), "EBADF");
  await host.dispose();
});

Deno.test("a full ring makes send wait for the reader instead of dropping bytes", async () => {
  const buffer = region();
  const server = createStorageSockets({ region: buffer });
  const client = createStorageSockets({ region: buffer });
  const { connector, accepted } = await pair(server, client, 701);
  const message = new Uint8Array(5 * CONFIG.extentBytes + 17).map((_, i) => i % 251);
  const [received] = await Promise.all([
    readAll(server, accepted, 1000),
    client.send(connector, message).then(() => client.close(connector)),
  ]);
  assert.deepEqual(received, message);
  await server.dispose();
  await client.dispose();
});

Deno.test("send and recv fail with ETIMEDOUT when the peer stays silent past the timeout", async () => {
  const buffer = region();
  const server = createStorageSockets({ region: buffer });
  const client = createStorageSockets({ region: buffer });
  const { connector, accepted } = await pair(server, client, 702);
  assert.equal(await code(server.recv(accepted, new Uint8Array(4))), "ETIMEDOUT");
  const tooMuch = new Uint8Array(CONFIG.extentBytes + 1);
  assert.equal(await code(client.send(connector, tooMuch)), "ETIMEDOUT");
  await server.dispose();
  await client.dispose();
});

Deno.test("connect is refused with nobody listening and accept times out with nobody connecting", async () => {
  const buffer = region();
  const host = createStorageSockets({ region: buffer });
  const fd = await host.socket("storage");
  assert.equal(await code(host.connect(fd, { kind: "storage", stg: 3, port: 9 })), "ECONNREFUSED");
  const listener = await host.socket("storage");
  await host.bind(listener, { kind: "storage", stg: 3, port: 0 });
  await host.listen(listener, 1);
  assert.equal(await code(host.accept(listener)), "ETIMEDOUT");
  await host.dispose();
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
});

Deno.test("a peer whose lease ran out makes recv fail with ECONNRESET and its blocks are reclaimed", async () => {
  const buffer = region();
  let skewMs = 0;
  const server = createStorageSockets({
    region: buffer,
    clock: () => Date.now() + skewMs,
  });
  const client = createStorageSockets({ region: buffer });
  const { listener, accepted } = await pair(server, client, 703);
  skewMs = 10 * CONFIG.leaseMs; // from the server's clock, the client stopped renewing long ago
  assert.equal(await code(server.recv(accepted, new Uint8Array(4))), "ECONNRESET");
  assert.equal(server.reclaim(), 1);
  await server.close(accepted);
  await server.close(listener);
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
  await server.dispose();
  skewMs = 0;
  await client.dispose();
});

Deno.test("hosts claim distinct slots and a host whose slot was taken over allocates nothing", async () => {
  const buffer = region();
  const first = createStorageSockets({ region: buffer, pid: 11 });
  const second = createStorageSockets({ region: buffer, pid: 12 });
  assert.deepEqual([first.hostId, second.hostId, first.incarnation], [1, 2, 1]);
  // Another process reclaimed the first host's slot (as if its lease had run out) and took it.
  const layout = attachRegion(buffer);
  if (!layout.ok) throw new Error(layout.message);
  const heartbeat = hostWord(layout.value, first.hostId, HOST.heartbeat);
  const usurper = heartbeatOf(Date.now() + 1);
  Atomics.store(new Int32Array(buffer), heartbeat, usurper);
  assert.equal(await code(first.socket("storage")), "ECONNRESET");
  assert.deepEqual(usage(buffer).blocks, []);
  await first.dispose();
  await second.dispose();
  assert.equal(
    Atomics.load(new Int32Array(buffer), heartbeat),
    usurper,
    "a lost slot is left alone",
  );
});
