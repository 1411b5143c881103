import assert from "node:assert/strict";
import { value } from "./_testing.ts";
import { claimHost, releaseHost } from "./hosts.ts";
import { HOST, hostWord, type RegionConfig } from "./layout.ts";
import { plainMemory } from "./memory.ts";
import * as ops from "./ops.ts";
import { attachRegion, formatRegion } from "./region.ts";
import { openRingEnd, recvStep, sendStep } from "./ring.ts";
import { runSteps, type StpContext } from "./steps.ts";
import { regionUsage } from "./usage.ts";

const CONFIG: RegionConfig = {
  stgs: [
    { id: 7, extentCount: 4, ephemeralPortMin: 50000, ephemeralPortMax: 50003 },
    { id: 9, extentCount: 2, ephemeralPortMin: 60000, ephemeralPortMax: 60001 },
  ],
  extentBytes: 4096,
  blockCount: 6,
  hostCount: 3,
  ioTimeoutMs: 1000,
  leaseMs: 500,
  backlogMax: 2,
};

function region(config = CONFIG): { a: StpContext; b: StpContext } {
  const buffer = value(formatRegion(config, crypto.randomUUID()));
  const layout = value(attachRegion(buffer));
  const memory = plainMemory(buffer);
  const one = value(runSteps(claimHost(memory, layout, 1000, 0)));
  const two = value(runSteps(claimHost(memory, layout, 1000, 0)));
  assert.deepEqual([one.hostId, two.hostId], [1, 2]);
  return {
    a: { memory, layout, hostId: 1, nowMs: 1000 },
    b: { memory, layout, hostId: 2, nowMs: 1000 },
  };
}

function listener(ctx: StpContext, port: number, backlog = 2): ops.BlockRef {
  const block = value(runSteps(ops.allocate(ctx, 0)));
  value(runSteps(ops.bind(ctx, block, 7, port)));
  value(runSteps(ops.listen(ctx, block, backlog)));
  return block;
}

function connectPair(a: StpContext, b: StpContext, port: number) {
  const server = listener(a, port);
  const client = value(runSteps(ops.allocate(b, 3)));
  const pending = value(runSteps(ops.connect(b, client, 7, port)));
  const accepted = value(runSteps(ops.accept(a, server)));
  assert.equal(accepted.kind, "ready");
  const polled = value(runSteps(ops.pollConnected(b, client, pending)));
  assert.deepEqual(polled, { kind: "ready", value: port });
  if (accepted.kind !== "ready") throw new Error("unreachable");
  return { server, client, accepted: accepted.value.block };
}

Deno.test("a connected pair moves bytes both ways and every resource returns on close", () => {
  const { a, b } = region();
  const { server, client, accepted } = connectPair(a, b, 80);
  const clientEnd = value(openRingEnd(b, client));
  const serverEnd = value(openRingEnd(a, accepted));
  assert.deepEqual(sendStep(b, clientEnd, new Uint8Array([1, 2, 3])), { kind: "moved", bytes: 3 });
  const into = new Uint8Array(8);
  assert.deepEqual(recvStep(a, serverEnd, into), { kind: "moved", bytes: 3 });
  assert.deepEqual([...into.subarray(0, 3)], [1, 2, 3]);
  assert.equal(recvStep(a, serverEnd, into).kind, "waiting");
  value(runSteps(ops.close(b, client)));
  assert.deepEqual(recvStep(a, serverEnd, into), { kind: "eof" });
  assert.equal(sendStep(a, serverEnd, into).kind, "failed");
  value(runSteps(ops.close(a, accepted)));
  value(runSteps(ops.close(a, server)));
  assert.deepEqual(regionUsage(a.memory, a.layout), { blocks: [], ports: [], extents: [] });
});

Deno.test("bind reports EADDRINUSE for a taken port and EADDRNOTAVAIL when the range is spent", () => {
  const { a, b } = region();
  listener(a, 80);
  const other = value(runSteps(ops.allocate(b, 0)));
  const taken = runSteps(ops.bind(b, other, 7, 80));
  assert.equal(!taken.ok && taken.code, "EADDRINUSE");
  for (let i = 0; i < 2; i++) {
    const block = value(runSteps(ops.allocate(b, 0)));
    value(runSteps(ops.bind(b, block, 9, 0)));
  }
  const spent = runSteps(ops.bind(b, other, 9, 0));
  assert.equal(!spent.ok && spent.code, "EADDRNOTAVAIL");
});

Deno.test("connect is refused without a listener and when the backlog is full", () => {
  const { a, b } = region();
  const lone = value(runSteps(ops.allocate(b, 0)));
  const refused = runSteps(ops.connect(b, lone, 7, 81));
  assert.equal(!refused.ok && refused.code, "ECONNREFUSED");
  listener(a, 80, 1);
  value(runSteps(ops.connect(b, lone, 7, 80)));
  const second = value(runSteps(ops.allocate(b, 0)));
  const full = runSteps(ops.connect(b, second, 7, 80));
  assert.equal(!full.ok && full.code, "ECONNREFUSED");
});

Deno.test("a refused connect says which refusal it met: nobody listening, backlog full, listener gone, or its host's lease run out", () => {
  const { a, b } = region();
  const lone = value(runSteps(ops.allocate(b, 0)));
  const nobody = runSteps(ops.connect(b, lone, 7, 81));
  assert.match(!nobody.ok ? nobody.message : "", /nobody listens on stg 7 port 81/);
  const server = listener(a, 80, 1);
  value(runSteps(ops.connect(b, lone, 7, 80)));
  const second = value(runSteps(ops.allocate(b, 0)));
  const full = runSteps(ops.connect(b, second, 7, 80));
  assert.match(
    !full.ok ? full.message : "",
    /stg 7 port 80 refused: backlog full \(1 connect queued ahead, backlog 1\)/,
  );
  const closing = ops.connect(b, second, 7, 80);
  closing.next();
  value(runSteps(ops.close(a, server)));
  const gone = runSteps(closing);
  assert.match(
    !gone.ok ? gone.message : "",
    /stg 7 port 80 refused: the listener closed while the connect queued/,
  );
  listener(a, 82, 2);
  const expired = runSteps(ops.connect({ ...b, nowMs: 1000 + CONFIG.leaseMs + 1 }, second, 7, 82));
  assert.match(
    !expired.ok ? expired.message : "",
    /nobody listens on stg 7 port 82 \(the listener's host 1 holds no lease: lapsed or fenced\)/,
  );
});

Deno.test("accept reports ENOBUFS when the STG has no ring space left", () => {
  const { a, b } = region({
    ...CONFIG,
    stgs: [{ id: 7, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50003 }],
  });
  connectPair(a, b, 80);
  const client = value(runSteps(ops.allocate(b, 0)));
  const pending = value(runSteps(ops.connect(b, client, 7, 80)));
  const server = { index: 0, gen: 1 };
  const accepted = runSteps(ops.accept(a, server));
  assert.equal(!accepted.ok && accepted.code, "ENOBUFS");
  const polled = runSteps(ops.pollConnected(b, client, pending));
  assert.equal(!polled.ok && polled.code, "ECONNREFUSED");
});

Deno.test("a dead host's blocks are reset for its peer and then reclaimed", () => {
  const { a, b } = region();
  const { server, client, accepted } = connectPair(a, b, 80);
  const serverEnd = value(openRingEnd(a, accepted));
  releaseHost(b.memory, b.layout, 2, b.memory.load(hostWord(b.layout, 2, HOST.heartbeat)));
  const step = recvStep(a, serverEnd, new Uint8Array(4));
  assert.equal(step.kind === "failed" && step.code, "ECONNRESET");
  assert.equal(runSteps(ops.sweepDeadHosts(a)), 1);
  value(runSteps(ops.close(a, accepted)));
  value(runSteps(ops.close(a, server)));
  assert.ok(client.index >= 0);
  assert.deepEqual(regionUsage(a.memory, a.layout), { blocks: [], ports: [], extents: [] });
});

Deno.test("allocate reports ENOBUFS when every control block is taken", () => {
  const { a } = region();
  for (let i = 0; i < CONFIG.blockCount; i++) value(runSteps(ops.allocate(a, i)));
  const none = runSteps(ops.allocate(a, 0));
  assert.equal(!none.ok && none.code, "ENOBUFS");
});

Deno.test("a sender waiting for ring space is woken when its peer reads, not when its peer sends", () => {
  const { a, b } = region();
  const { client, accepted } = connectPair(a, b, 80);
  const clientEnd = value(openRingEnd(b, client));
  const serverEnd = value(openRingEnd(a, accepted));
  const full = new Uint8Array(CONFIG.extentBytes);
  assert.deepEqual(sendStep(b, clientEnd, full), { kind: "moved", bytes: full.length });
  const blocked = sendStep(b, clientEnd, new Uint8Array(1));
  assert.equal(blocked.kind, "waiting");
  if (blocked.kind !== "waiting") return;
  const unchanged = () => a.memory.load(blocked.wait.index) === blocked.wait.value;
  sendStep(a, serverEnd, new Uint8Array(5)); // data the other way: no space for the sender
  assert.ok(unchanged(), "the sender's wait word moved on data it cannot use (a spurious wake)");
  recvStep(a, serverEnd, new Uint8Array(10));
  assert.ok(!unchanged(), "reading frees space: the sender's wait word moves");
});
