import assert from "node:assert/strict";
import { value } from "./_testing.ts";
import { fenced, incarnationOf } from "./fence.ts";
import { claimHost, hostAliveNow, hostSlots, peerHostFailure, renewLease } from "./hosts.ts";
import { HOST, hostWord, type RegionConfig } from "./layout.ts";
import { plainMemory } from "./memory.ts";
import * as ops from "./ops.ts";
import { attachRegion, formatRegion } from "./region.ts";
import { openRingEnd, recvStep } from "./ring.ts";
import { runSteps, type StpContext } from "./steps.ts";
import { regionUsage } from "./usage.ts";

const CONFIG: RegionConfig = {
  stgs: [{ id: 7, extentCount: 4, ephemeralPortMin: 50000, ephemeralPortMax: 50003 }],
  extentBytes: 4096,
  blockCount: 6,
  hostCount: 2,
  ioTimeoutMs: 1000,
  leaseMs: 500,
  backlogMax: 2,
};

function region() {
  const buffer = value(formatRegion(CONFIG, crypto.randomUUID()));
  return { memory: plainMemory(buffer), layout: value(attachRegion(buffer)) };
}

function host(r: ReturnType<typeof region>, nowMs: number): StpContext & { beat: number } {
  const claim = value(runSteps(claimHost(r.memory, r.layout, nowMs, 4242)));
  const ctx = { ...r, hostId: claim.hostId, nowMs, beat: claim.beat };
  runSteps(ops.reclaimPredecessor(ctx));
  return ctx;
}

Deno.test("claimHost hands out free slots in order and ENOBUFS when every slot is live", () => {
  const r = region();
  assert.equal(host(r, 1000).hostId, 1);
  assert.equal(host(r, 1000).hostId, 2);
  const none = runSteps(claimHost(r.memory, r.layout, 1100, 0));
  assert.equal(!none.ok && none.code, "ENOBUFS");
  assert.deepEqual(hostSlots(r.memory, r.layout, 1100).map((s) => [s.status, s.pid]), [
    ["live", 4242],
    ["live", 4242],
  ]);
});

Deno.test("a dead host's slot, taken again, does not keep the dead incarnation's blocks", () => {
  const r = region();
  const dead = host(r, 1000);
  const peer = host(r, 1000);
  const listener = value(runSteps(ops.allocate(dead, 0)));
  value(runSteps(ops.bind(dead, listener, 7, 80)));
  value(runSteps(ops.listen(dead, listener, 1)));
  const client = value(runSteps(ops.allocate(peer, 1)));
  const pending = value(runSteps(ops.connect(peer, client, 7, 80)));
  const accepted = value(runSteps(ops.accept(dead, listener)));
  assert.equal(accepted.kind, "ready");
  assert.equal(value(runSteps(ops.pollConnected(peer, client, pending))).kind, "ready");
  // The first host dies; the peer renews; a new process claims the dead slot after the lease.
  const peerLater = { ...peer, nowMs: 2000 };
  value(renewLease(r.memory, r.layout, peer.hostId, peer.beat, 2000));
  const again = host(r, 2000);
  assert.equal(again.hostId, dead.hostId);
  const slot = hostSlots(r.memory, r.layout, 2000)[0];
  assert.equal(slot?.incarnation, 2);
  const end = value(openRingEnd(peerLater, client));
  const step = recvStep(peerLater, end, new Uint8Array(4));
  assert.equal(step.kind === "failed" && step.code, "ECONNRESET");
  value(runSteps(ops.close(peerLater, client)));
  assert.deepEqual(regionUsage(r.memory, r.layout), { blocks: [], ports: [], extents: [] });
});

Deno.test("a host whose slot was taken over learns it at its next renewal", () => {
  const r = region();
  const slow = host(r, 1000);
  host(r, 1000);
  const usurper = host(r, 1600); // the slow host's lease ran out at 1500
  assert.equal(usurper.hostId, slow.hostId);
  const renewed = renewLease(r.memory, r.layout, slow.hostId, slow.beat, 1700);
  assert.equal(!renewed.ok && renewed.code, "ECONNRESET");
  assert.ok(
    hostAliveNow({ ...r, hostId: usurper.hostId, nowMs: 1700 }, usurper.hostId),
  );
});

Deno.test("a sweep frees a dead host's blocks and then its slot", () => {
  const r = region();
  const dead = host(r, 1000);
  const sweeper = host(r, 1000);
  const block = value(runSteps(ops.allocate(dead, 0)));
  value(runSteps(ops.bind(dead, block, 7, 81)));
  value(renewLease(r.memory, r.layout, sweeper.hostId, sweeper.beat, 3000));
  assert.equal(runSteps(ops.sweepDeadHosts({ ...sweeper, nowMs: 3000 })), 1);
  assert.deepEqual(hostSlots(r.memory, r.layout, 3000).map((s) => s.status), ["free", "live"]);
  assert.deepEqual(regionUsage(r.memory, r.layout), { blocks: [], ports: [], extents: [] });
});

Deno.test("a live peer's fresh heartbeat read after the caller's clock stalled is not fenced", () => {
  const r = region();
  const self = host(r, 1000);
  const peer = host(r, 1000);
  const suspect = { hostId: peer.hostId, incarnation: incarnationOf(r.memory, r.layout, 2) };
  // The caller read its clock at 1000, then stalled 3 leases; meanwhile the peer renewed.
  const renewedMs = 1000 + 3 * CONFIG.leaseMs;
  value(renewLease(r.memory, r.layout, peer.hostId, peer.beat, renewedMs));
  const stale = { ...self, nowMs: 1000, readClockMs: () => renewedMs + 1 };
  assert.equal(peerHostFailure(stale, suspect), undefined);
  assert.equal(fenced(r.memory, r.layout, peer.hostId), false);
});

Deno.test("a heartbeat ahead of a fresh clock by more than a lease is still fenced", () => {
  const r = region();
  const self = host(r, 1000);
  host(r, 1000);
  const suspect = { hostId: 2, incarnation: incarnationOf(r.memory, r.layout, 2) };
  r.memory.store(hostWord(r.layout, 2, HOST.heartbeat), 1000 + 3 * CONFIG.leaseMs);
  const failure = peerHostFailure({ ...self, readClockMs: () => 1000 }, suspect);
  assert.equal(failure?.code, "EPROTO");
  assert.equal(fenced(r.memory, r.layout, 2), true);
});

Deno.test("a sweep by a caller whose clock stalled leaves a live peer's blocks and slot alone", () => {
  const r = region();
  const self = host(r, 1000);
  const peer = host(r, 1000);
  const listener = value(runSteps(ops.allocate(peer, 0)));
  value(runSteps(ops.bind(peer, listener, 7, 80)));
  value(runSteps(ops.listen(peer, listener, 1)));
  const renewedMs = 1000 + 3 * CONFIG.leaseMs;
  value(renewLease(r.memory, r.layout, peer.hostId, peer.beat, renewedMs));
  const stale = { ...self, nowMs: 1000, readClockMs: () => renewedMs + 1 };
  assert.equal(runSteps(ops.sweepDeadHosts(stale)), 0);
  assert.equal(hostSlots(r.memory, r.layout, renewedMs + 1)[1]?.status, "live");
  const client = value(runSteps(ops.allocate(self, 1)));
  assert.equal(runSteps(ops.connect({ ...self, nowMs: renewedMs }, client, 7, 80)).ok, true);
});

Deno.test("claimHost judges each slot against a clock read after its load: live hosts that renewed while the claimer stalled keep their slots", () => {
  const r = region();
  const a = host(r, 1000);
  const b = host(r, 1000);
  // Both renew at 3000, while the claimer, which read its clock at 1000, was stalled.
  const renewedMs = 3000;
  for (const live of [a, b]) {
    value(renewLease(r.memory, r.layout, live.hostId, live.beat, renewedMs));
  }
  const stalled = runSteps(claimHost(r.memory, r.layout, 1000, 0, () => renewedMs + 1));
  assert.equal(!stalled.ok && stalled.code, "ENOBUFS", "no live host's slot is taken over");
  // Once their leases ran out, a claimer with a fresh clock takes the first slot, its beat fresh.
  const laterMs = renewedMs + CONFIG.leaseMs + 1;
  const taken = value(runSteps(claimHost(r.memory, r.layout, 1000, 0, () => laterMs)));
  assert.equal(taken.hostId, a.hostId);
  assert.deepEqual(hostSlots(r.memory, r.layout, laterMs).map((slot) => slot.status), [
    "live",
    "dead",
  ]);
});
