import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { IN_PLACE_FRAME_MIN_BYTES, Session } from "./session.ts";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { createStorageSockets } from "../../adapters/shm.ts";
import { createRouter } from "../../core/dispatch/router.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { formatRegion } from "../../core/stp/region.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import { connectedPair, quietSessionPair } from "../_testing.ts";
import { writeFrame } from "../../core/wire/frame.ts";
import { encodeMessage } from "../../core/wire/messages.ts";

function tcpPair(sockets: Sockets) {
  return connectedPair(sockets, { kind: "network", host: "127.0.0.1", port: 0 });
}

function storagePair(sockets: Sockets) {
  return connectedPair(sockets, { kind: "storage", stg: 1, port: 0 });
}

function world(ioTimeoutMs = 2000) {
  const region = formatRegion({
    stgs: [{ id: 1, extentCount: 8, ephemeralPortMin: 40000, ephemeralPortMax: 40100 }],
    extentBytes: 1 << 20,
    blockCount: 16,
    hostCount: 2,
    ioTimeoutMs,
    leaseMs: 1000,
    backlogMax: 4,
  }, crypto.randomUUID());
  if (!region.ok) throw new Error(region.message);
  const storage = createStorageSockets({ region: region.value, waitMode: "async" });
  return {
    storage,
    sockets: createRouter({ network: createTcpSockets({ ioTimeoutMs }), storage }),
  };
}

Deno.test("control and error messages go on the network and data through storage, counted per kind", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const [errorA, errorB] = await tcpPair(sockets);
  const [dataA, dataB] = await storagePair(sockets);
  const a = new Session(sockets, { control: controlA, error: errorA, data: dataA });
  const b = new Session(sockets, { control: controlB, error: errorB, data: dataB });
  const chunks = [new Uint8Array(3 << 20).fill(7), new Uint8Array(10).fill(9)];
  const sending = (async () => {
    await a.sendMessage("control", { type: "hello" });
    for (const chunk of chunks) await a.sendData(chunk);
    await a.endData();
    await a.sendMessage("error", { type: "skipped", path: "x" });
  })();
  assert.deepEqual(await b.nextMessage("control"), { type: "hello" });
  const received: Uint8Array[] = [];
  for (let chunk = await b.nextData(); chunk !== null; chunk = await b.nextData()) {
    received.push(chunk);
  }
  assert.deepEqual(received, chunks);
  assert.deepEqual(await b.nextMessage("error"), { type: "skipped", path: "x" });
  await sending;
  assert.equal(a.bytes.storage, (3 << 20) + 10 + 3 * 9); // 9-byte headers: tag, length, CRC-32
  assert.ok(a.bytes.network > 0);
  for (const fd of [controlA, controlB, errorA, errorB, dataA, dataB]) await sockets.close(fd);
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});

Deno.test("one descriptor can carry every channel (the database flow)", async () => {
  const { storage, sockets } = world();
  const [dataA, dataB] = await storagePair(sockets);
  const a = new Session(sockets, { control: dataA, error: dataA, data: dataA });
  const b = new Session(sockets, { control: dataB, error: dataB, data: dataB });
  await Promise.all([
    a.sendMessage("control", 1),
    a.sendData(new Uint8Array([1, 2])),
    a.sendMessage("error", 2),
    a.endData(),
  ]);
  assert.equal(await b.nextMessage("control"), 1);
  assert.equal(await b.nextMessage("error"), 2);
  assert.deepEqual(await b.nextData(), new Uint8Array([1, 2]));
  assert.equal(await b.nextData(), null);
  assert.equal(a.bytes.network, 0);
  await sockets.close(dataA);
  await sockets.close(dataB);
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});

Deno.test("a peer that closes makes every pending receive fail with a typed error", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const b = new Session(sockets, { control: controlB, error: controlB, data: controlB });
  const pending = b.nextMessage("control");
  await sockets.close(controlA);
  const error = await pending.catch((e) => e);
  assert.ok(error instanceof SocketError && error.code === "ECONNRESET", String(error));
  await assert.rejects(b.nextData(), SocketError);
  await sockets.close(controlB);
  await b.settled();
  await storage.dispose();
});

/** A session frame made by hand: tag, big-endian length, big-endian CRC-32, payload. */
function frame(tag: number, payload: Uint8Array, sum = crc32(payload)): Uint8Array {
  const bytes = new Uint8Array(9 + payload.length);
  const view = new DataView(bytes.buffer);
  bytes[0] = tag;
  view.setUint32(1, payload.length, false);
  view.setUint32(5, sum, false);
  bytes.set(payload, 9);
  return bytes;
}

Deno.test("a frame whose payload does not match its CRC-32 fails the channel with EPROTO", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const [dataA, dataB] = await tcpPair(sockets);
  const b = new Session(sockets, { control: controlB, error: controlB, data: dataB });
  const chunk = new Uint8Array(4096).fill(7);
  await sockets.send(dataA, frame(2, chunk));
  assert.deepEqual(await b.nextData(), chunk);
  const flipped = chunk.slice();
  flipped[100] = 7 ^ 0xff;
  await sockets.send(dataA, frame(2, flipped, crc32(chunk)));
  const error = await b.nextData().catch((e) => e);
  assert.ok(error instanceof SocketError && error.code === "EPROTO", String(error));
  assert.match(error.message, /failed its CRC-32 check/);
  for (const fd of [controlA, controlB, dataA, dataB]) await sockets.close(fd);
  await b.settled();
  await storage.dispose();
});

Deno.test("a frame with an unknown tag or a message on the wrong descriptor is EPROTO", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const [dataA, dataB] = await tcpPair(sockets);
  const b = new Session(sockets, { control: controlB, error: controlB, data: dataB });
  await sockets.send(controlA, new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0, 0]));
  const error = await b.nextMessage("control").catch((e) => e);
  assert.ok(error instanceof SocketError && error.code === "EPROTO", String(error));
  const misplaced = new TextEncoder().encode(JSON.stringify({ channel: "control", body: 1 }));
  await sockets.send(dataA, frame(1, misplaced));
  const dataError = await b.nextData().catch((e) => e);
  assert.ok(dataError instanceof SocketError && dataError.code === "EPROTO", String(dataError));
  for (const fd of [controlA, controlB, dataA, dataB]) await sockets.close(fd);
  await b.settled();
  await storage.dispose();
});

Deno.test("a header that does not decode names the session, the descriptor and its channels, the byte offset, the header's bytes and the frame before", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const [dataA, dataB] = await storagePair(sockets);
  const b = new Session(sockets, { control: controlB, error: controlB, data: dataB }, {
    keepaliveMs: 0,
    label: "server job 7, data session",
  });
  const chunk = new Uint8Array(100).map((_, i) => i);
  await sockets.send(dataA, frame(2, chunk));
  assert.deepEqual(await b.nextData(), chunk);
  // Zeroed bytes where the next header should be: the error of a lost frame boundary.
  await sockets.send(dataA, new Uint8Array(9));
  const error = await b.nextData().catch((e) => e);
  assert.ok(error instanceof SocketError && error.code === "EPROTO", String(error));
  const session = /^EPROTO: server job 7, data session (\d+): /.exec(error.message)?.[1];
  assert.ok(session !== undefined, error.message);
  assert.equal(
    error.message,
    `EPROTO: server job 7, data session ${session}: storage descriptor ${dataB} (data): ` +
      "unknown session frame tag 0 at byte 109 (after 1 frames); header bytes 00 00 00 00 00 00 " +
      "00 00 00; the frame before: tag 2, 100 bytes, ending 54 55 56 57 58 59 5a 5b 5c 5d 5e 5f " +
      "60 61 62 63",
  );
  assert.equal(error.fd, dataB);
  for (const fd of [controlA, controlB, dataA, dataB]) await sockets.close(fd);
  await b.settled();
  await storage.dispose();
});

Deno.test("a handshake's error message read where the session's first frame should be is named as one", async () => {
  const { storage, sockets } = world();
  const [controlA, controlB] = await tcpPair(sockets);
  const b = new Session(sockets, { control: controlB, error: controlB, data: controlB }, {
    keepaliveMs: 0,
  });
  // The peer's handshake failed after this side's ended: its error message, a control frame.
  const text = "unexpected wellKnown message at step 126 (state DESCRIPTOR_AWAITED)";
  await writeFrame(sockets, controlA, encodeMessage({ type: "error", code: "EPROTO", text }));
  const error = await b.nextMessage("control").catch((e) => e);
  assert.ok(error instanceof SocketError && error.code === "EPROTO", String(error));
  const length = 2 + text.length;
  assert.match(
    error.message,
    new RegExp(
      `unknown session frame tag 0 at byte 0 \\(after 0 frames\\); header bytes 00 00 00 ` +
        `${length.toString(16)} 07 .*\\(they read as a handshake frame: a ${length}-byte error ` +
        `message; the peer's handshake did not end as this side's did\\)`,
    ),
  );
  for (const fd of [controlA, controlB]) await sockets.close(fd);
  await b.settled();
  await storage.dispose();
});

/** Sockets whose every recv returns one byte and every send goes out one byte at a time. */
function byteByByte(inner: Sockets): Sockets {
  return {
    ...inner,
    recv: (fd, into) => inner.recv(fd, into.subarray(0, 1)),
    send: async (fd, bytes) => {
      for (let at = 0; at < bytes.length; at++) await inner.send(fd, bytes.subarray(at, at + 1));
    },
  };
}

Deno.test("frames split at every byte on a TCP or a storage descriptor arrive whole, in order, on their channels", async () => {
  const { storage, sockets } = world();
  const split = byteByByte(sockets);
  const [controlA, controlB] = await tcpPair(sockets);
  const [errorA, errorB] = await tcpPair(sockets);
  const [dataA, dataB] = await storagePair(sockets);
  const options = { keepaliveMs: 0 };
  const a = new Session(split, { control: controlA, error: errorA, data: dataA }, options);
  const b = new Session(split, { control: controlB, error: errorB, data: dataB }, options);
  const chunks = [0, 1, 9, 200].map((n) => new Uint8Array(n + 1).fill(n));
  await Promise.all([
    (async () => {
      for (const chunk of chunks) await a.sendData(chunk);
      await a.endData();
    })(),
    a.sendMessage("control", { n: 1 }),
    a.sendMessage("error", { n: 2 }),
    a.sendMessage("control", { n: 3 }),
  ]);
  assert.deepEqual(await b.nextMessage("control"), { n: 1 });
  assert.deepEqual(await b.nextMessage("control"), { n: 3 });
  assert.deepEqual(await b.nextMessage("error"), { n: 2 });
  for (const chunk of chunks) assert.deepEqual(await b.nextData(), chunk);
  assert.equal(await b.nextData(), null);
  for (const fd of [controlA, controlB, errorA, errorB, dataA, dataB]) await sockets.close(fd);
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});

for (const keepaliveMs of [0, 80]) {
  Deno.test(`a channel quiet for longer than the I/O timeout ${keepaliveMs ? "survives with keepalives" : "times out without them"}`, async () => {
    const { storage, sockets } = world(300);
    const [controlA, controlB] = await tcpPair(sockets);
    const [dataA, dataB] = await storagePair(sockets);
    const a = new Session(sockets, { control: controlA, error: controlA, data: dataA }, {
      keepaliveMs,
    });
    const b = new Session(sockets, { control: controlB, error: controlB, data: dataB }, {
      keepaliveMs,
    });
    const late = b.nextMessage("control");
    late.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 900));
    await a.sendMessage("control", "after a long quiet").catch(() => {});
    if (keepaliveMs > 0) assert.equal(await late, "after a long quiet");
    else {
      const error = await late.catch((e) => e);
      // Both sides time out after the same 300 ms: b's own receive (ETIMEDOUT), or a's first,
      // which closes its descriptors, so b sees the peer gone (ECONNRESET). Either way, no
      // message crossed the quiet channel.
      assert.ok(
        error instanceof SocketError && ["ETIMEDOUT", "ECONNRESET"].includes(error.code),
        String(error),
      );
    }
    a.close();
    b.close();
    for (const fd of [controlA, controlB, dataA, dataB]) await sockets.close(fd);
    await Promise.all([a.settled(), b.settled()]);
    await storage.dispose();
  });
}

/** Sends `total` pattern bytes through reserveData/commitData, as much per frame as reserved. */
async function sendReserved(session: Session, total: number, frameBytes: number) {
  for (let sent = 0; sent < total;) {
    const room = await session.reserveData(Math.min(frameBytes, total - sent));
    for (let i = 0; i < room.length; i++) room[i] = (sent + i) % 251;
    await session.commitData(room.length);
    sent += room.length;
  }
  await session.endData();
}

async function receiveAll(session: Session): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
    parts.push(chunk.slice());
  }
  const all = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) all.set(part, (at += part.length) - part.length);
  return all;
}

Deno.test("reserved data frames on a storage descriptor are written in place in the ring and arrive whole", async () => {
  const { storage, sockets } = world();
  const [dataA, dataB] = await storagePair(sockets);
  const a = new Session(sockets, { control: dataA, error: dataA, data: dataA }, {
    zeroCopy: storage,
  });
  const b = new Session(sockets, { control: dataB, error: dataB, data: dataB });
  assert.equal(a.dataInPlace, true);
  const total = 5 * (1 << 20) + 123;
  const sending = Promise.all([
    sendReserved(a, total, 700 * 1024),
    a.sendMessage("control", { type: "progress" }), // waits for the frame reserved before it
  ]);
  const received = await receiveAll(b);
  await sending;
  assert.equal(received.length, total);
  for (let i = 0; i < total; i += 4093) assert.equal(received[i], i % 251, `byte ${i}`);
  assert.equal(received[total - 1], (total - 1) % 251);
  assert.deepEqual(await b.nextMessage("control"), { type: "progress" });
  // Only a span at the ring's end too small for a frame may be sent from a buffer.
  assert.ok(a.dataFrames.inPlace >= 8, `in place: ${a.dataFrames.inPlace}`);
  assert.ok(a.dataFrames.copied <= a.dataFrames.inPlace / 4, `copied: ${a.dataFrames.copied}`);
  await sockets.close(dataA);
  await sockets.close(dataB);
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});

Deno.test("reserved data frames go from a buffer on the network or without the zero-copy calls", async () => {
  const { storage, sockets } = world();
  const [tcpA, tcpB] = await tcpPair(sockets);
  const [dataA, dataB] = await storagePair(sockets);
  for (const [from, to, zeroCopy] of [[tcpA, tcpB, storage], [dataA, dataB, undefined]] as const) {
    const a = new Session(sockets, { control: from, error: from, data: from }, { zeroCopy });
    const b = new Session(sockets, { control: to, error: to, data: to });
    assert.equal(a.dataInPlace, false);
    const [received] = await Promise.all([receiveAll(b), sendReserved(a, 3 << 20, 1 << 20)]);
    assert.equal(received.length, 3 << 20);
    assert.equal(received[(3 << 20) - 1], ((3 << 20) - 1) % 251);
    assert.deepEqual(a.dataFrames, { inPlace: 0, copied: 3 });
    await sockets.close(from);
    await sockets.close(to);
    await Promise.all([a.settled(), b.settled()]);
  }
  await storage.dispose();
});

Deno.test("a reserved frame rejects a second reserve, an oversized commit and a commit without reserve", async () => {
  const { storage, sockets } = world();
  const [dataA, dataB] = await storagePair(sockets);
  const a = new Session(sockets, { control: dataA, error: dataA, data: dataA }, {
    zeroCopy: storage,
  });
  await assert.rejects(a.commitData(1), (e) => e instanceof SocketError && e.code === "EINVAL");
  const room = await a.reserveData(IN_PLACE_FRAME_MIN_BYTES + 10);
  await assert.rejects(a.reserveData(10), (e) => e instanceof SocketError && e.code === "EALREADY");
  await assert.rejects(a.commitData(room.length + 1), RangeError);
  await assert.rejects(a.reserveData(0), RangeError);
  // The failed commit gave the reservation up: the descriptor sends again.
  await a.sendData(new Uint8Array([5]));
  await sockets.close(dataA);
  await sockets.close(dataB);
  await a.settled();
  await storage.dispose();
});

Deno.test("a pump that owns the keepalives stops the session's own, and they resume when it hands them back", async () => {
  const { client, server, close } = await quietSessionPair({ client: 0, server: 20 });
  try {
    assert.equal(server.ownKeepalives(), 20);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(client.framesReceived, 0, "keepalives went out while the pump owned them");
    server.sendKeepalives();
    // Bounded poll: the one keepalive, then the session's own once resumed.
    for (let i = 0; i < 500 && client.framesReceived < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(client.framesReceived, 1);
    server.resumeKeepalives();
    for (let i = 0; i < 500 && client.framesReceived < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(client.framesReceived >= 3, `${client.framesReceived} frames after the resume`);
  } finally {
    await close();
  }
});

/** Holds the thread for `ms` without giving the event loop a turn (slow message handling). */
function busyMs(ms: number): void {
  const untilMs = performance.now() + ms;
  // Bounded by the clock.
  while (performance.now() < untilMs) { /* holds the thread */ }
}

Deno.test("a burst of frames that is already received is handed on with turns of the event loop in between, so timers (a host's lease renewal) keep running", async () => {
  const count = 100;
  const parts = Array.from(
    { length: count },
    (_, i) => frame(1, new TextEncoder().encode(JSON.stringify({ channel: "control", body: i }))),
  );
  const stream = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  parts.reduce((at, part) => (stream.set(part, at), at + part.length), 0);
  let at = 0;
  // Every recv is served at once from bytes already there: a fast peer, a full buffer.
  const sockets = {
    recv(_fd: number, into: Uint8Array): Promise<number | null> {
      const n = Math.min(into.length, stream.length - at);
      into.set(stream.subarray(at, at + n));
      at += n;
      return Promise.resolve(n === 0 ? null : n);
    },
  } as unknown as Sockets;
  const session = new Session(sockets, { control: 3, error: 3, data: 3 }, { keepaliveMs: 0 });
  let timerRan = false;
  let timerRanBeforeLast = false;
  for (let i = 0; i < count; i++) {
    assert.equal(await session.nextMessage("control"), i);
    if (i === 0) setTimeout(() => (timerRan = true), 0);
    busyMs(1); // 100 messages hold the thread for 100 ms: longer than a short lease's slice
    if (i === count - 1) timerRanBeforeLast = timerRan;
  }
  await session.settled();
  assert.ok(timerRanBeforeLast, "a timer set at the first message did not run before the last");
});

/** Two sessions over one storage connection, both with the zero-copy calls; `b` lends. */
async function lendingPair() {
  const { storage, sockets } = world();
  const [dataA, dataB] = await storagePair(sockets);
  const over = (fd: number) =>
    new Session(sockets, { control: fd, error: fd, data: fd }, { zeroCopy: storage });
  const [a, b] = [over(dataA), over(dataB)];
  b.lendData();
  return { storage, sockets, dataA, dataB, a, b };
}

Deno.test("a consumer that asks for lent data frames gets views of the receive ring, gives each back, and the stream arrives whole", async () => {
  const { storage, sockets, dataA, dataB, a, b } = await lendingPair();
  const total = 5 * (1 << 20) + 123;
  const sending = sendReserved(a, total, 700 * 1024);
  const received = new Uint8Array(total);
  let at = 0;
  let views = 0;
  for (let chunk = await b.nextData(); chunk !== null; chunk = await b.nextData()) {
    if (chunk.buffer instanceof SharedArrayBuffer) views++; // the region's own memory
    received.set(chunk, at);
    at += chunk.length;
    b.releaseData(chunk);
  }
  await sending;
  assert.equal(at, total);
  for (let i = 0; i < total; i += 4093) assert.equal(received[i], i % 251, `byte ${i}`);
  assert.equal(received[total - 1], (total - 1) % 251);
  // Only a frame that is not whole and contiguous in the ring is copied.
  assert.equal(views, b.receivedFrames.lent);
  assert.ok(b.receivedFrames.lent >= 6, `lent: ${b.receivedFrames.lent}`);
  assert.ok(b.receivedFrames.copied <= 2, `copied: ${b.receivedFrames.copied}`);
  await sockets.close(dataA);
  await sockets.close(dataB);
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});

Deno.test("a lent data frame whose ring bytes change before it is given back fails its CRC-32 check then, and the data channel fails with EPROTO", async () => {
  const { storage, sockets, dataA, dataB, a, b } = await lendingPair();
  const sending = sendReserved(a, 3 << 20, 1 << 20).catch(() => {});
  const chunk = await b.nextData();
  assert.ok(chunk !== null && chunk.buffer instanceof SharedArrayBuffer, "a lent view");
  chunk[100] = chunk[100]! ^ 0xff; // a stray write into the ring, after the frame arrived
  assert.throws(() => b.releaseData(chunk), (error: unknown) => {
    assert.ok(error instanceof SocketError && error.code === "EPROTO", String(error));
    assert.match(error.message, /failed its CRC-32 check/);
    return true;
  });
  const next = await b.nextData().catch((error) => error);
  assert.ok(next instanceof SocketError && next.code === "EPROTO", String(next));
  await sockets.close(dataA);
  await sockets.close(dataB);
  await sending;
  await Promise.all([a.settled(), b.settled()]);
  await storage.dispose();
});
