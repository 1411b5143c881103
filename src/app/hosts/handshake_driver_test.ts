import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { driveHandshake, readyToAccept, withStorageInfo } from "./handshake_driver.ts";
import { freePortPair } from "./ports.ts";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { createStorageSockets, type StorageSockets } from "../../adapters/shm.ts";
import { createRouter } from "../../core/dispatch/router.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { createHandshake } from "../../core/handshake/mod.ts";
import { parseHandshakeConfig } from "../../core/handshake/config.ts";
import type { HandshakeRole } from "../../core/handshake/types.ts";
import { formatRegion } from "../../core/stp/region.ts";
import { usageOfBuffer } from "../../core/stp/usage.ts";
import { readFrame, recvExactly, writeFrame } from "../../core/wire/frame.ts";

const STG = { id: 1, lengthBytes: 1 << 20 };

function testRegion(): SharedArrayBuffer {
  const region = formatRegion({
    stgs: [{ id: STG.id, extentCount: 8, ephemeralPortMin: 40000, ephemeralPortMax: 40100 }],
    extentBytes: 256 * 1024,
    blockCount: 16,
    hostCount: 4,
    ioTimeoutMs: 2000,
    leaseMs: 1000,
    backlogMax: 4,
  }, crypto.randomUUID());
  if (!region.ok) throw new Error(region.message);
  return region.value;
}

interface Host {
  sockets: Sockets;
  storage: StorageSockets;
}

function host(region: SharedArrayBuffer): Host {
  const storage = createStorageSockets({ region, waitMode: "async" });
  return {
    storage,
    sockets: createRouter({ network: createTcpSockets({ ioTimeoutMs: 2000 }), storage }),
  };
}

/** A side's configuration, with the STG info of the region its host attached. */
function config(role: HandshakeRole, h: Host, wellKnownPort: number, timeoutMs = 3000) {
  const filled = withStorageInfo({ wellKnownPort, handshakeTimeoutMs: timeoutMs }, role, h.storage);
  if ("failed" in filled) throw new Error(filled.failed.message);
  const parsed = parseHandshakeConfig(filled.config);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.value;
}

function machine(role: HandshakeRole, h: Host, wellKnownPort: number, timeoutMs = 3000) {
  return createHandshake(role, config(role, h, wellKnownPort, timeoutMs));
}

function blocksInUse(region: SharedArrayBuffer): number {
  const usage = usageOfBuffer(region);
  if (!usage.ok) throw new Error(usage.message);
  return usage.value.blocks.length;
}

async function pair(
  listenerRole: HandshakeRole,
  initiatorRole: HandshakeRole,
  initiatorRegion?: SharedArrayBuffer,
) {
  const region = testRegion();
  const wkp = freePortPair();
  const listener = host(region);
  const initiator = host(initiatorRegion ?? region);
  let ready = () => {};
  const listenerReady = new Promise<void>((resolve) => (ready = resolve));
  const listening = driveHandshake(machine(listenerRole, listener, wkp), listener.sockets, {
    onStep: (machine) => readyToAccept(machine) && ready(),
  });
  await listenerReady;
  const initiated = driveHandshake(machine(initiatorRole, initiator, wkp), initiator.sockets);
  const [a, b] = await Promise.all([listening, initiated]);
  return { region, listener, initiator, listenerOutcome: a, initiatorOutcome: b };
}

async function moveBytes(
  from: Sockets,
  fromFd: number,
  to: Sockets,
  toFd: number,
  totalBytes: number,
) {
  const chunk = new Uint8Array(64 * 1024);
  crypto.getRandomValues(chunk);
  const sent = createHash("sha256");
  const sender = (async () => {
    for (let offset = 0; offset < totalBytes; offset += chunk.length) {
      sent.update(chunk);
      await from.send(fromFd, chunk);
    }
  })();
  const received = createHash("sha256");
  const into = new Uint8Array(totalBytes);
  const got = await recvExactly(to, toFd, into);
  received.update(into.subarray(0, got));
  await sender;
  assert.equal(got, totalBytes);
  assert.equal(received.digest("hex"), sent.digest("hex"));
}

async function closeAll(h: Host, channels: Readonly<Record<string, number>>) {
  for (const fd of Object.values(channels)) await h.sockets.close(fd);
  await h.storage.dispose();
}

Deno.test("the file-system flow over real TCP and the region: control and error on the network, data through storage", async () => {
  const { region, listener: client, initiator: server, listenerOutcome, initiatorOutcome } =
    await pair(
      "fs-client",
      "fs-server",
    );
  assert.equal(listenerOutcome.status, "established");
  assert.equal(initiatorOutcome.status, "established");
  if (listenerOutcome.status !== "established" || initiatorOutcome.status !== "established") return;
  const c = listenerOutcome.channels;
  const s = initiatorOutcome.channels;
  assert.deepEqual(Object.keys(c).sort(), ["control", "data", "error"]);
  assert.ok(c.data! >= 2 ** 30 && s.data! >= 2 ** 30, "data is a storage descriptor");
  assert.ok(
    c.control! < 2 ** 30 && c.error! < 2 ** 30,
    "control and error are network descriptors",
  );
  await moveBytes(client.sockets, c.data!, server.sockets, s.data!, 4 * 1024 * 1024);
  for (const channel of ["control", "error"]) {
    await writeFrame(server.sockets, s[channel]!, new TextEncoder().encode(`on ${channel}`));
    assert.equal(
      new TextDecoder().decode((await readFrame(client.sockets, c[channel]!))!),
      `on ${channel}`,
    );
  }
  await closeAll(client, c);
  await closeAll(server, s);
  assert.equal(blocksInUse(region), 0, "every control block is free again");
});

Deno.test("the database flow over real TCP and the region: everything ends up on storage", async () => {
  const { region, listener: server, initiator: client, listenerOutcome, initiatorOutcome } =
    await pair(
      "db-server",
      "db-client",
    );
  assert.equal(listenerOutcome.status, "established");
  assert.equal(initiatorOutcome.status, "established");
  if (listenerOutcome.status !== "established" || initiatorOutcome.status !== "established") return;
  const c = initiatorOutcome.channels;
  const s = listenerOutcome.channels;
  for (const fd of [...Object.values(c), ...Object.values(s)]) {
    assert.ok(fd >= 2 ** 30, `${fd} is storage`);
  }
  await moveBytes(client.sockets, c.data!, server.sockets, s.data!, 4 * 1024 * 1024);
  await closeAll(client, c);
  await closeAll(server, s);
  assert.equal(blocksInUse(region), 0);
});

Deno.test("a file-system server with no client fails with ECONNREFUSED and leaves nothing open", async () => {
  const region = testRegion();
  const server = host(region);
  const outcome = await driveHandshake(
    machine("fs-server", server, freePortPair()),
    server.sockets,
  );
  assert.equal(outcome.status, "failed");
  if (outcome.status === "failed") assert.equal(outcome.reason.code, "ECONNREFUSED");
  await server.storage.dispose();
  assert.equal(blocksInUse(region), 0);
});

Deno.test("a file-system client whose server never comes fails with ETIMEDOUT at its deadline", async () => {
  const region = testRegion();
  const client = host(region);
  const outcome = await driveHandshake(
    machine("fs-client", client, freePortPair(), 300),
    client.sockets,
  );
  assert.equal(outcome.status, "failed");
  if (outcome.status === "failed") assert.equal(outcome.reason.code, "ETIMEDOUT");
  await client.storage.dispose();
  assert.equal(blocksInUse(region), 0);
});

Deno.test("a listening client given up by its signal fails at once with ETIMEDOUT and frees its ports", async () => {
  const region = testRegion();
  const client = host(region);
  const wkp = freePortPair();
  const stop = new AbortController();
  const startedMs = performance.now();
  const outcome = driveHandshake(machine("fs-client", client, wkp, 60_000), client.sockets, {
    signal: stop.signal,
    onStep: (m) => {
      if (readyToAccept(m)) stop.abort();
    },
  });
  const ended = await outcome;
  assert.equal(ended.status, "failed");
  if (ended.status === "failed") assert.equal(ended.reason.code, "ETIMEDOUT");
  assert.ok(performance.now() - startedMs < 30_000, "not at the 60 s deadline");
  assert.ok(ended.setupMs < 30_000, "setupMs is real time, not the jumped clock");
  for (const port of [wkp, wkp + 1]) Deno.listen({ hostname: "127.0.0.1", port }).close();
  await client.storage.dispose();
  assert.equal(blocksInUse(region), 0);
});

for (
  const [listenerRole, initiatorRole, step] of [
    ["fs-client", "fs-server", "160"],
    ["db-server", "db-client", "200"],
  ] as const
) {
  Deno.test(`sides that attached different regions fail at step ${step} saying so, both at once (${listenerRole})`, async () => {
    const other = testRegion();
    const outcomes = await pair(listenerRole, initiatorRole, other);
    const receiver = listenerRole === "fs-client"
      ? outcomes.listenerOutcome
      : outcomes.initiatorOutcome;
    const sender = listenerRole === "fs-client"
      ? outcomes.initiatorOutcome
      : outcomes.listenerOutcome;
    assert.equal(receiver.status, "failed");
    assert.equal(sender.status, "failed");
    if (receiver.status !== "failed" || sender.status !== "failed") return;
    assert.equal(receiver.reason.code, "EADDRNOTAVAIL");
    assert.equal(receiver.reason.step, step);
    assert.match(receiver.reason.message, /both sides attached different regions/);
    assert.notEqual(sender.reason.code, "ETIMEDOUT", sender.reason.message);
    await outcomes.listener.storage.dispose();
    await outcomes.initiator.storage.dispose();
    assert.equal(blocksInUse(outcomes.region), 0);
    assert.equal(blocksInUse(other), 0);
  });
}

Deno.test("withStorageInfo offers the host's STG to senders, its region to receivers, and fails where no STG has room", () => {
  const region = testRegion();
  const h = host(region);
  const sent = withStorageInfo({ wellKnownPort: 7000 }, "db-server", h.storage);
  assert.ok("config" in sent);
  assert.deepEqual((sent.config as { stg: unknown }).stg, {
    id: 1,
    lengthBytes: 8 * 256 * 1024,
    regionId: h.storage.layout.regionId,
  });
  const received = withStorageInfo({ wellKnownPort: 7000 }, "fs-client", h.storage);
  assert.ok("config" in received);
  assert.deepEqual((received.config as { region: unknown }).region, h.storage.attachedRegion());
  const full = withStorageInfo({ wellKnownPort: 7000 }, "fs-server", {
    offerStg: () => ({ ok: false, code: "ENOBUFS", message: "no STG has room for 2 rings" }),
    attachedRegion: () => h.storage.attachedRegion(),
  });
  assert.ok("failed" in full);
  assert.deepEqual(full.failed, {
    origin: "local",
    code: "ENOBUFS",
    step: "138",
    message: "no STG has room for 2 rings",
  });
  h.storage.dispose();
});
