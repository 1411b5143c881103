import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createTcpSockets } from "./tcp.ts";
import { SocketError, type SocketErrorCode } from "../core/dispatch/errors.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { createRouter, unavailableSockets } from "../core/dispatch/router.ts";
import { kindOfDescriptor, STORAGE_FD_MIN } from "../core/dispatch/descriptor.ts";
import { readFrame, writeFrame } from "../core/wire/frame.ts";

const LOOPBACK = { kind: "network", host: "127.0.0.1", port: 0 } as const;

async function rejectsWith(promise: Promise<unknown>, code: SocketErrorCode): Promise<SocketError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, but the call succeeded`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof SocketError, `expected a SocketError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}

/** Opens a listener and a connected pair on it. */
async function connectedPair(net: Sockets) {
  const listener = await net.socket("network");
  await net.bind(listener, LOOPBACK);
  await net.listen(listener, 4);
  const address = await net.getsockname(listener);
  const client = await net.socket("network");
  const [server] = await Promise.all([net.accept(listener), net.connect(client, address)]);
  return { listener, client, server };
}

async function closeAll(net: Sockets, ...fds: number[]) {
  for (const fd of fds) await net.close(fd);
}

Deno.test("64 MiB sent over TCP arrives intact (SHA-256 matches)", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 20_000 });
  const { listener, client, server } = await connectedPair(net);
  const totalBytes = 64 * 1024 * 1024;
  const chunk = new Uint8Array(1024 * 1024);
  const sentHash = createHash("sha256");
  const sender = (async () => {
    for (let offset = 0; offset < totalBytes; offset += chunk.length) {
      for (let i = 0; i < chunk.length; i += 4096) chunk[i] = (offset / 4096 + i) & 0xff;
      crypto.getRandomValues(chunk.subarray(0, 1024));
      sentHash.update(chunk);
      await net.send(client, chunk);
    }
    await net.close(client);
  })();
  const receivedHash = createHash("sha256");
  const into = new Uint8Array(256 * 1024);
  let receivedBytes = 0;
  for (let reads = 0; reads < totalBytes; reads++) {
    const got = await net.recv(server, into);
    if (got === null) break;
    receivedHash.update(into.subarray(0, got));
    receivedBytes += got;
  }
  await sender;
  assert.equal(receivedBytes, totalBytes);
  assert.equal(receivedHash.digest("hex"), sentHash.digest("hex"));
  assert.equal(await net.recv(server, into), null, "end of stream stays end of stream");
  await closeAll(net, server, listener);
});

Deno.test("recv fails with ECONNRESET when the peer resets mid-recv", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 10_000 });
  const { listener, client, server } = await connectedPair(net);
  // Unread bytes at close make the kernel send a reset instead of a clean end.
  await net.send(client, new Uint8Array(1024));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const pending = net.recv(client, new Uint8Array(16));
  await net.close(server);
  await rejectsWith(pending, "ECONNRESET");
  await rejectsWith(net.send(client, new Uint8Array(1)), "ECONNRESET");
  await closeAll(net, client, listener);
});

Deno.test("connect to a closed port fails with ECONNREFUSED", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 5_000 });
  const probe = await net.socket("network");
  await net.bind(probe, LOOPBACK);
  const address = await net.getsockname(probe);
  await net.close(probe);
  const client = await net.socket("network");
  await rejectsWith(net.connect(client, address), "ECONNREFUSED");
  await rejectsWith(net.send(client, new Uint8Array(1)), "ECONNREFUSED");
  await net.close(client);
});

Deno.test("bind to a port in use fails with EADDRINUSE and leaves the socket usable", async () => {
  const net = createTcpSockets();
  const first = await net.socket("network");
  await net.bind(first, LOOPBACK);
  const address = await net.getsockname(first);
  const second = await net.socket("network");
  await rejectsWith(net.bind(second, address), "EADDRINUSE");
  await net.bind(second, LOOPBACK);
  await closeAll(net, first, second);
});

Deno.test("illegal call orders are typed errors", async () => {
  const net = createTcpSockets();
  const fd = await net.socket("network");
  await rejectsWith(net.listen(fd, 4), "EINVAL");
  await rejectsWith(net.send(fd, new Uint8Array(1)), "ENOTCONN");
  await rejectsWith(net.recv(fd, new Uint8Array(1)), "ENOTCONN");
  await rejectsWith(net.accept(fd), "EINVAL");
  await rejectsWith(net.getsockname(fd), "EINVAL");
  await rejectsWith(net.bind(fd, { kind: "storage", stg: 1, port: 0 }), "EAFNOSUPPORT");
  await rejectsWith(net.bind(fd, { ...LOOPBACK, port: 70000 }), "EINVAL");
  await net.bind(fd, LOOPBACK);
  await rejectsWith(net.listen(fd, 0), "EINVAL");
  await net.listen(fd, 4);
  await rejectsWith(net.connect(fd, LOOPBACK), "EINVAL");
  await net.close(fd);
  await rejectsWith(net.close(fd), "EBADF");
  await rejectsWith(net.send(fd, new Uint8Array(1)), "EBADF");
});

Deno.test("accept that waits past the timeout fails with ETIMEDOUT and the listener still works", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 100 });
  const listener = await net.socket("network");
  await net.bind(listener, LOOPBACK);
  await net.listen(listener, 4);
  await rejectsWith(net.accept(listener), "ETIMEDOUT");
  const client = await net.socket("network");
  const [server] = await Promise.all([
    net.accept(listener),
    net.connect(client, await net.getsockname(listener)),
  ]);
  await closeAll(net, client, server, listener);
});

Deno.test("two recv calls at once on one descriptor: the second is EALREADY", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 5_000 });
  const { listener, client, server } = await connectedPair(net);
  const first = net.recv(server, new Uint8Array(4));
  await rejectsWith(net.recv(server, new Uint8Array(4)), "EALREADY");
  await net.send(client, new Uint8Array([1, 2]));
  assert.equal(await first, 2);
  await closeAll(net, client, server, listener);
});

Deno.test("frames round-trip; a clean end between frames reads as null", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 5_000 });
  const { listener, client, server } = await connectedPair(net);
  const payloads = [new Uint8Array(0), new TextEncoder().encode("hello"), new Uint8Array(60_000)];
  for (const payload of payloads) await writeFrame(net, client, payload);
  await net.close(client);
  for (const payload of payloads) assert.deepEqual(await readFrame(net, server), payload);
  assert.equal(await readFrame(net, server), null);
  await closeAll(net, server, listener);
});

Deno.test("an oversized frame is EMSGSIZE on both the writer and the reader", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 5_000 });
  const { listener, client, server } = await connectedPair(net);
  await rejectsWith(writeFrame(net, client, new Uint8Array(101), 100), "EMSGSIZE");
  await writeFrame(net, client, new Uint8Array(101), 1000);
  await rejectsWith(readFrame(net, server, 100), "EMSGSIZE");
  await closeAll(net, client, server, listener);
});

Deno.test("a peer that closes mid-frame gives EPROTO (truncated header or payload)", async () => {
  const net = createTcpSockets({ ioTimeoutMs: 5_000 });
  for (const partial of [new Uint8Array([0, 0]), new Uint8Array([0, 0, 0, 10, 1, 2, 3])]) {
    const { listener, client, server } = await connectedPair(net);
    await net.send(client, partial);
    await net.close(client);
    const error = await rejectsWith(readFrame(net, server), "EPROTO");
    assert.match(error.message, /truncated frame/);
    await closeAll(net, server, listener);
  }
});

Deno.test("the router sends network descriptors to TCP and refuses storage ones with ENOTSUP", async () => {
  const router = createRouter({
    network: createTcpSockets(),
    storage: unavailableSockets("storage", "no region attached"),
  });
  const fd = await router.socket("network");
  assert.equal(kindOfDescriptor(fd), "network");
  await router.bind(fd, LOOPBACK);
  const error = await rejectsWith(router.socket("storage"), "ENOTSUP");
  assert.match(error.message, /no region attached/);
  await rejectsWith(router.send(STORAGE_FD_MIN + 5, new Uint8Array(1)), "ENOTSUP");
  await rejectsWith(router.recv(2, new Uint8Array(1)), "EBADF");
  await rejectsWith(router.connect(fd, { kind: "storage", stg: 0, port: 1 }), "EAFNOSUPPORT");
  await router.close(fd);
});
