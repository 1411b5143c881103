/**
 * Every region word a host reads is untrusted: each test overwrites one word as a misbehaving
 * process could, then checks the reader gets a typed error naming the word (or leaves the word
 * alone), never an exception or an access outside the region.
 */

import assert from "node:assert/strict";
import { BlockState, F, packState } from "./block.ts";
import { fenced, fenceRecord } from "./fence.ts";
import { claimHost, hostSlots } from "./hosts.ts";
import {
  blockWord,
  extentWord,
  HOST,
  hostWord,
  portWord,
  type RegionConfig,
  type RegionLayout,
} from "./layout.ts";
import { plainMemory, type RegionMemory } from "./memory.ts";
import { strictMemory, value } from "./_testing.ts";
import * as ops from "./ops.ts";
import { attachRegion, formatRegion } from "./region.ts";
import { openRingEnd, recvStep, sendStep } from "./ring.ts";
import { runSteps, type StpContext } from "./steps.ts";
import { wordName } from "./trust.ts";

const CONFIG: RegionConfig = {
  stgs: [{ id: 7, extentCount: 4, ephemeralPortMin: 50000, ephemeralPortMax: 50003 }],
  extentBytes: 4096,
  blockCount: 6,
  hostCount: 3,
  ioTimeoutMs: 1000,
  leaseMs: 500,
  backlogMax: 2,
};

/** Two hosts (slots 1 and 2) on a fresh region. */
function region(): { a: StpContext; b: StpContext; memory: RegionMemory; layout: RegionLayout } {
  const buffer = value(formatRegion(CONFIG, crypto.randomUUID()));
  const layout = value(attachRegion(buffer));
  const memory = strictMemory(plainMemory(buffer));
  for (let n = 0; n < 2; n++) value(runSteps(claimHost(memory, layout, 1000, 0)));
  return {
    a: { memory, layout, hostId: 1, nowMs: 1000 },
    b: { memory, layout, hostId: 2, nowMs: 1000 },
    memory,
    layout,
  };
}

function listener(ctx: StpContext, port: number, backlog = 2): ops.BlockRef {
  const block = value(runSteps(ops.allocate(ctx, 0)));
  value(runSteps(ops.bind(ctx, block, 7, port)));
  value(runSteps(ops.listen(ctx, block, backlog)));
  return block;
}

/** Host b connects to a listener of host a; both ring ends are open. */
function connected(a: StpContext, b: StpContext) {
  const server = listener(a, 80);
  const client = value(runSteps(ops.allocate(b, 3)));
  const pending = value(runSteps(ops.connect(b, client, 7, 80)));
  const accepted = runSteps(ops.accept(a, server));
  if (!accepted.ok || accepted.value.kind !== "ready") throw new Error("accept did not pair");
  value(runSteps(ops.pollConnected(b, client, pending)));
  const block = accepted.value.value.block;
  return {
    server,
    client,
    accepted: block,
    clientEnd: value(openRingEnd(b, client)),
    serverEnd: value(openRingEnd(a, block)),
  };
}

function assertFailure(result: { ok: boolean; code?: string; message?: string }, code: string) {
  assert.equal(result.ok, false, `expected ${code}, got ${JSON.stringify(result)}`);
  assert.equal(result.code, code, result.message ?? "");
}

Deno.test("wordName names every table's words", () => {
  const { layout } = region();
  assert.equal(wordName(layout, 12), "header extentBytes");
  assert.equal(wordName(layout, hostWord(layout, 2, HOST.heartbeat)), "host slot 2 heartbeat");
  assert.equal(wordName(layout, blockWord(layout, 3, F.txTail)), "control block 3 txTail");
  assert.equal(wordName(layout, portWord(layout, 0, 80)), "port table of STG 7, port 80");
  assert.equal(wordName(layout, extentWord(layout, 2)), "extent table entry 2");
  assert.equal(wordName(layout, layout.deviceOffset / 4 + 1025), "extent 1 byte 4");
});

Deno.test("connect to a port whose table word names no block fails EPROTO naming the word", () => {
  const { b, memory, layout } = region();
  memory.store(portWord(layout, 0, 80), 4097);
  const client = value(runSteps(ops.allocate(b, 0)));
  const connect = runSteps(ops.connect(b, client, 7, 80));
  assertFailure(connect, "EPROTO");
  assert.match(connect.ok ? "" : connect.message, /port table of STG 7, port 80 .* is 4097/);
  const bind = runSteps(ops.bind(b, value(runSteps(ops.allocate(b, 1))), 7, 80));
  assertFailure(bind, "EPROTO");
});

Deno.test("bind to a port whose table word names a free block fails EPROTO, not EADDRINUSE", () => {
  const { b, memory, layout } = region();
  memory.store(portWord(layout, 0, 80), 5 + 1); // block 5 is free
  const bind = runSteps(ops.bind(b, value(runSteps(ops.allocate(b, 0))), 7, 80));
  assertFailure(bind, "EPROTO");
  assert.match(bind.ok ? "" : bind.message, /names control block 5, which is free/);
});

Deno.test("a sweep leaves a block whose state is outside the enum alone", () => {
  const { a, memory, layout } = region();
  const garbage = (1 << 4) | 13; // owner 1, state 13
  memory.store(blockWord(layout, 2, F.state), garbage);
  memory.store(hostWord(layout, 1, HOST.heartbeat), 0); // its "owner" is dead
  assert.equal(runSteps(ops.sweepDeadHosts({ ...a, hostId: 2 })), 0);
  assert.equal(memory.load(blockWord(layout, 2, F.state)), garbage);
});

Deno.test("a listener whose backlog word cannot be: connect fails EPROTO and fences its host", () => {
  const { a, b, memory, layout } = region();
  const server = listener(a, 80);
  memory.store(blockWord(layout, server.index, F.backlog), 0);
  const client = value(runSteps(ops.allocate(b, 3)));
  const connect = runSteps(ops.connect(b, client, 7, 80));
  assertFailure(connect, "EPROTO");
  assert.match(connect.ok ? "" : connect.message, /control block 0 backlog .* is 0/);
  assert.ok(fenced(memory, layout, 1), "the listener's host is fenced");
  assert.equal(hostSlots(memory, layout, 1000)[0]?.status, "fenced");
});

Deno.test("opening a ring whose peer index names no block fails EPROTO", () => {
  const { a, b, memory, layout } = region();
  const { client } = connected(a, b);
  memory.store(blockWord(layout, client.index, F.peerIndex), 1 << 20);
  const end = openRingEnd(b, client);
  assertFailure(end, "EPROTO");
  assert.match(end.ok ? "" : end.message, /control block 3 peerIndex .* is 1048576/);
});

Deno.test("opening a ring whose extent lies outside its STG fails EPROTO", () => {
  const { a, b, memory, layout } = region();
  const { client } = connected(a, b);
  memory.store(blockWord(layout, client.index, F.txExtent), 99);
  assertFailure(openRingEnd(b, client), "EPROTO");
});

Deno.test("the address of a block whose STG index cannot be is EPROTO, not an exception", () => {
  const { a, b, memory, layout } = region();
  const { client } = connected(a, b);
  memory.store(blockWord(layout, client.index, F.stgIndex), 5);
  assertFailure(ops.blockAddress(b, client), "EPROTO");
});

Deno.test("a peer's txTail that moves backwards fails the reader with EPROTO and fences the peer", () => {
  const { a, b, memory, layout } = region();
  const { accepted, clientEnd, serverEnd } = connected(a, b);
  assert.equal(sendStep(b, clientEnd, new Uint8Array(100)).kind, "moved");
  assert.deepEqual(recvStep(a, serverEnd, new Uint8Array(10)), { kind: "moved", bytes: 10 });
  assert.equal(recvStep(a, serverEnd, new Uint8Array(10)).kind, "moved");
  memory.store(blockWord(layout, clientEnd.ref.index, F.txTail), 50); // was 100, read up to 20
  const step = recvStep(a, serverEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "EPROTO");
  assert.match(step.kind === "failed" ? step.message : "", /control block 3 txTail .* is 50/);
  const record = fenceRecord(memory, layout, 2);
  assert.equal(record?.current, true);
  assert.equal(record?.byHost, 1);
  assert.equal(record?.wordName, "control block 3 txTail");
  // The fenced host is dead: a sweep resets its connected block for the peer.
  assert.ok(runSteps(ops.sweepDeadHosts(a)) >= 1);
  assert.equal(
    memory.load(blockWord(layout, clientEnd.ref.index, F.state)) & 0xf,
    BlockState.reset,
  );
  value(runSteps(ops.close(a, accepted)));
});

Deno.test("a peer's rxHead past our txTail fails the writer with EPROTO and fences the peer", () => {
  const { a, b, memory, layout } = region();
  const { clientEnd, serverEnd } = connected(a, b);
  assert.equal(sendStep(b, clientEnd, new Uint8Array(100)).kind, "moved");
  memory.store(blockWord(layout, serverEnd.ref.index, F.rxHead), 200);
  const step = sendStep(b, clientEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "EPROTO");
  assert.ok(fenced(memory, layout, 1));
});

Deno.test("a peer state word naming another owner under the same generation fences the peer", () => {
  const { a, b, memory, layout } = region();
  const { accepted, clientEnd } = connected(a, b);
  const forged = packState(BlockState.connected, 3, accepted.gen);
  memory.store(blockWord(layout, accepted.index, F.state), forged);
  const step = sendStep(b, clientEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "EPROTO");
  assert.equal(fenceRecord(memory, layout, 1)?.value, forged);
});

Deno.test("a ring whose extent was handed to another block fails the next step with EPROTO", () => {
  const { a, b, memory, layout } = region();
  const { clientEnd } = connected(a, b);
  const tx = (clientEnd.txOffset - layout.deviceOffset) / layout.extentBytes;
  memory.store(extentWord(layout, tx), 5 + 1);
  const step = sendStep(b, clientEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "EPROTO");
  assert.match(step.kind === "failed" ? step.message : "", /extent table entry \d .* is 6/);
});

Deno.test("a host whose own block was reset reads no more bytes from its ring", () => {
  const { a, b, memory, layout } = region();
  const { accepted, clientEnd, serverEnd } = connected(a, b);
  assert.equal(sendStep(b, clientEnd, new Uint8Array(100)).kind, "moved");
  const word = memory.load(blockWord(layout, accepted.index, F.state));
  memory.store(blockWord(layout, accepted.index, F.state), (word & ~0xf) | BlockState.reset);
  const step = recvStep(a, serverEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "ECONNRESET");
});

Deno.test("a peer's heartbeat far ahead of the clock fails the waiter with EPROTO and fences it", () => {
  const { a, b, memory, layout } = region();
  const { serverEnd } = connected(a, b);
  memory.store(hostWord(layout, 2, HOST.heartbeat), 1000 + 10 * CONFIG.leaseMs);
  const step = recvStep(a, serverEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "EPROTO");
  assert.match(step.kind === "failed" ? step.message : "", /host slot 2 heartbeat .* ahead/);
  assert.equal(hostSlots(memory, layout, 1000)[1]?.status, "fenced");
});

Deno.test("a peer whose slot holds another incarnation is gone: ECONNRESET", () => {
  const { a, b, memory, layout } = region();
  const { serverEnd } = connected(a, b);
  memory.add(hostWord(layout, 2, HOST.incarnation), 1);
  const step = recvStep(a, serverEnd, new Uint8Array(10));
  assert.equal(step.kind === "failed" && step.code, "ECONNRESET");
  assert.match(step.kind === "failed" ? step.message : "", /holder was replaced/);
});

Deno.test("a fence applies to one incarnation: the slot's next claim starts unfenced", () => {
  const { a, b, memory, layout } = region();
  const { clientEnd, serverEnd } = connected(a, b);
  sendStep(b, clientEnd, new Uint8Array(100));
  recvStep(a, serverEnd, new Uint8Array(10));
  memory.store(blockWord(layout, clientEnd.ref.index, F.txTail), 50);
  recvStep(a, serverEnd, new Uint8Array(10));
  assert.ok(fenced(memory, layout, 2));
  memory.store(hostWord(layout, 2, HOST.heartbeat), 0); // its slot freed
  const again = value(runSteps(claimHost(memory, layout, 1000, 0)));
  assert.equal(again.hostId, 2);
  assert.ok(!fenced(memory, layout, 2));
  assert.equal(fenceRecord(memory, layout, 2)?.current, false, "the record stays readable");
});

Deno.test("a listener that closes while a connect is in flight refuses it and fences nobody", () => {
  const { a, b, memory, layout } = region();
  const server = listener(a, 80);
  const client = value(runSteps(ops.allocate(b, 3)));
  value(runSteps(ops.bind(b, client, 7, 0)));
  const connect = ops.connect(b, client, 7, 80);
  assert.equal(connect.next().done, false, "connect yields before publishing `connecting`");
  // Meanwhile the listener closes and its block is taken again (its backlog field cleared).
  value(runSteps(ops.close(a, server)));
  assert.equal(value(runSteps(ops.allocate(a, server.index))).index, server.index);
  const result = runSteps(connect);
  assertFailure(result, "ECONNREFUSED");
  assert.ok(!fenced(memory, layout, 1), "an honest host is not fenced for a race");
});
