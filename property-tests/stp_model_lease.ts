/**
 * Leases in the CBT model, on virtual time: a host's process stops (paused, not dead: a
 * zombie that still holds its references), its lease runs out while the other hosts renew
 * theirs, its blocks are reclaimed (by another host's sweep, or by the process that claims its
 * slot next) and reused, and then:
 *
 * - every call the zombie makes with a reference it held fails ECONNRESET (bind, listen,
 *   connect, accept, opening its ring, renewing its lease), and its `close` is harmless: it
 *   changes nothing a live host holds, even when the block was reused by its own slot's next
 *   incarnation (the generation is what tells the uses apart);
 * - the live peer of a connection whose other end was reclaimed sees ECONNRESET on send and
 *   recv.
 *
 * Listens take any backlog: the one in effect is clamped to 1..backlogMax, and a listener
 * refuses the connector that would queue one past it (ECONNREFUSED), not one before. The model
 * and real region are those of `stp_model.ts`; the commands here are added to its commands.
 *
 * @module
 */

import fc from "fast-check";
import * as ops from "../src/core/stp/ops.ts";
import { claimHost, heartbeatOf, renewLease } from "../src/core/stp/hosts.ts";
import type { RegionFactory } from "../src/core/stp/region.ts";
import { openRingEnd, recvStep, sendStep } from "../src/core/stp/ring.ts";
import { runSteps, type StpContext } from "../src/core/stp/steps.ts";
import { NOW_MS, SMALL_CONFIG, value } from "./stp_harness.ts";
import {
  checkAgainstModel,
  expectCode,
  Listen,
  live,
  type Model,
  type ModelSocket,
  pick,
  type Real,
  refOf,
} from "./stp_model.ts";
import { commands as cbtCommands, modelProperty, refused } from "./stp_model_run.ts";

/** A process whose lease ran out while it was stopped: its slot, its last beat, its clock. */
interface Zombie {
  readonly ctx: StpContext;
  readonly beat: number;
}

/** The model, with the sockets whose blocks were reclaimed from under a zombie. */
interface LeaseModel extends Model {
  /** Sockets a zombie still holds a reference to. */
  readonly stale: ModelSocket[];
  /** How many zombies there are. */
  zombies: number;
}

/** The real region with a virtual clock, each host's last heartbeat, and the zombies. */
interface LeaseReal extends Real {
  clockMs: number;
  /** The heartbeat each live host wrote last, by host id. */
  readonly beats: Map<number, number>;
  /** The zombie holding each stale socket's reference. */
  readonly holders: Map<ModelSocket, Zombie>;
  readonly zombies: Zombie[];
}

type LeaseCmd = fc.Command<LeaseModel, LeaseReal>;

const hostIds = Array.from({ length: SMALL_CONFIG.hostCount }, (_, i) => i + 1);
const at = (ctx: StpContext, clockMs: number): StpContext => ({ ...ctx, nowMs: clockMs });

/** What a reclaim of `host`'s blocks does, in the model: its sockets end as if closed. */
function reclaimInModel(m: LeaseModel, r: LeaseReal, host: number, zombie: Zombie): void {
  const held = live(m).filter((s) => s.host === host);
  m.zombies++;
  for (const s of held) {
    s.closed = true;
    m.stale.push(s);
    r.holders.set(s, zombie);
    if (s.phase === "connected" && s.pairedWith?.closed === true) {
      m.extentsFree.set(s.stg ?? 1, (m.extentsFree.get(s.stg ?? 1) ?? 0) + 2);
    }
  }
  // A reclaimed listener refuses the connectors of live hosts queued on it.
  for (const listener of held.filter((s) => s.phase === "listening")) {
    for (const c of live(m).filter((x) => x.queuedOn === listener)) refused(r, c);
  }
}

/**
 * Host `host`'s process stops; the clock moves past the lease while the others renew; its
 * blocks are reclaimed, by another host's sweep or by the next process claiming its slot; that
 * process takes its place (the stopped one lives on as a zombie).
 */
class Restart implements LeaseCmd {
  constructor(readonly host: number, readonly bySweep: boolean) {}
  check = () => true;
  run(m: LeaseModel, r: LeaseReal) {
    const { memory, layout } = r.region;
    const old = r.hosts[this.host - 1]!;
    r.clockMs += layout.leaseMs + 1;
    for (const id of hostIds.filter((id) => id !== this.host)) {
      const beat = renewLease(memory, layout, id, r.beats.get(id)!, r.clockMs);
      r.beats.set(id, value(beat));
      r.hosts[id - 1] = at(r.hosts[id - 1]!, r.clockMs);
    }
    const zombie = { ctx: at(old, r.clockMs), beat: r.beats.get(this.host)! };
    r.zombies.push(zombie);
    const sweeper = r.hosts.find((h) => h.hostId !== this.host)!;
    if (this.bySweep) runSteps(ops.sweepDeadHosts(sweeper));
    const claim = value(runSteps(claimHost(memory, layout, r.clockMs, 0)));
    if (claim.hostId !== this.host) {
      throw new Error(`the slot claimed after host ${this.host} died is ${claim.hostId}`);
    }
    const next: StpContext = { memory, layout, hostId: claim.hostId, nowMs: r.clockMs };
    if (!this.bySweep) runSteps(ops.reclaimPredecessor(next));
    r.hosts[this.host - 1] = next;
    r.beats.set(this.host, claim.beat);
    reclaimInModel(m, r, this.host, zombie);
    checkAgainstModel(m, r);
  }
  toString = () => `restart(host ${this.host}, ${this.bySweep ? "swept" : "slot claimed"})`;
}

const STALE_CALLS = ["bind", "listen", "connect", "accept", "ring", "close"] as const;

/** A zombie calls with a reference it held: ECONNRESET, or for close nothing changes. */
class StaleCall implements LeaseCmd {
  constructor(readonly n: number, readonly call: typeof STALE_CALLS[number]) {}
  check = (m: LeaseModel) => m.stale.length > 0;
  run(m: LeaseModel, r: LeaseReal) {
    const s = pick(m.stale, this.n)!;
    const zombie = r.holders.get(s)!;
    const ctx = at(zombie.ctx, r.clockMs);
    const ref = refOf(r, s);
    const what = `${this.call} with a stale reference to block ${ref.index} (gen ${ref.gen})`;
    if (this.call === "close") {
      const closed = runSteps(ops.close(ctx, ref));
      if (!closed.ok) throw new Error(`${what}: ${closed.message}`);
    } else expectCode(staleCall(this.call, ctx, ref), "ECONNRESET", what);
    checkAgainstModel(m, r);
  }
  toString = () => `stale ${this.call}(#${this.n})`;
}

function staleCall(
  call: Exclude<typeof STALE_CALLS[number], "close">,
  ctx: StpContext,
  ref: ops.BlockRef,
): { ok: boolean; code?: string } {
  switch (call) {
    case "bind":
      return runSteps(ops.bind(ctx, ref, 1, 0));
    case "listen":
      return runSteps(ops.listen(ctx, ref, 1));
    case "connect":
      return runSteps(ops.connect(ctx, ref, 1, 1));
    case "accept":
      return runSteps(ops.accept(ctx, ref));
    case "ring":
      return openRingEnd(ctx, ref);
  }
}

/** A zombie renews its lease: its slot was taken over, so ECONNRESET. */
class StaleRenew implements LeaseCmd {
  constructor(readonly n: number) {}
  check = (m: LeaseModel) => m.zombies > 0;
  run(_m: LeaseModel, r: LeaseReal) {
    const zombie = pick(r.zombies, this.n)!;
    const renewed = renewLease(
      r.region.memory,
      r.region.layout,
      zombie.ctx.hostId,
      zombie.beat,
      r.clockMs,
    );
    expectCode(renewed, "ECONNRESET", `a zombie of host ${zombie.ctx.hostId} renewing`);
  }
  toString = () => `stale renew(#${this.n})`;
}

/** The live end of a connection whose other end was reclaimed: send and recv are ECONNRESET. */
/** Live connected sockets whose peer's block was reclaimed. */
const resetEnds = (m: LeaseModel) =>
  live(m).filter((s) =>
    s.phase === "connected" && s.pairedWith !== undefined && m.stale.includes(s.pairedWith)
  );

class PeerSeesReset implements LeaseCmd {
  constructor(readonly n: number) {}
  check = (m: LeaseModel) => resetEnds(m).length > 0;
  run(m: LeaseModel, r: LeaseReal) {
    const s = pick(resetEnds(m), this.n)!;
    const ctx = r.hosts[s.host - 1]!;
    const end = value(openRingEnd(ctx, refOf(r, s)));
    for (
      const [what, step] of [
        ["recv", recvStep(ctx, end, new Uint8Array(8))],
        ["send", sendStep(ctx, end, new Uint8Array(8))],
      ] as const
    ) {
      if (step.kind !== "failed" || step.code !== "ECONNRESET") {
        throw new Error(
          `${what} from a reclaimed peer: expected ECONNRESET, got ${JSON.stringify(step)}`,
        );
      }
    }
    checkAgainstModel(m, r);
  }
  toString = () => `peer sees reset(#${this.n})`;
}

/** Backlogs from 0 (taken as 1) to two past the region's maximum (clamped). */
const backlogs = fc.integer({ min: 0, max: SMALL_CONFIG.backlogMax + 2 });

const leaseCommands = [
  ...cbtCommands,
  fc.tuple(fc.nat(9), backlogs).map(([n, backlog]) => new Listen(n, backlog)),
  fc.tuple(fc.constantFrom(...hostIds), fc.boolean()).map(([h, sweep]) => new Restart(h, sweep)),
  fc.tuple(fc.nat(9), fc.constantFrom(...STALE_CALLS)).map(([n, call]) => new StaleCall(n, call)),
  fc.nat(9).map((n) => new StaleRenew(n)),
  fc.nat(9).map((n) => new PeerSeesReset(n)),
] as fc.Arbitrary<LeaseCmd>[];

/**
 * The model-based property with leases, reclaim, reuse and backlogs over a region factory: the
 * CBT model's commands and the ones above, checked after each command against the model, and
 * at the end everything closed leaves the region as formatted.
 *
 * @param factory the region implementation under test
 * @returns a fast-check property
 */
export function leaseModelProperty(factory: RegionFactory): fc.IProperty<[Iterable<LeaseCmd>]> {
  return modelProperty(factory, SMALL_CONFIG.hostCount, leaseCommands, ({ model, real }) => ({
    model: { ...model, stale: [], zombies: 0 },
    real: {
      ...real,
      clockMs: NOW_MS,
      beats: new Map(hostIds.map((id) => [id, heartbeatOf(NOW_MS)])),
      holders: new Map(),
      zombies: [],
    },
  }));
}
