/**
 * Host slots and leases. A process that attaches a region claims a **host slot** (1..hostCount)
 * by compare-and-exchange on the slot's heartbeat word: a free slot (heartbeat 0) first, else
 * one whose lease ran out. The heartbeat is the low 32 bits of the wall clock in milliseconds at
 * the holder's last renewal; a host is alive while its heartbeat is at most `leaseMs` old. Each
 * claim counts a new **incarnation** of the slot.
 *
 * Renewal is a compare-and-exchange from the value this host last wrote, so a host that was too
 * slow and whose slot was reclaimed or taken over learns it at its next renewal (ECONNRESET)
 * instead of renewing someone else's lease. A slot taken over from a dead host may still hold
 * that host's blocks (their owner bits name the slot): the claimer reclaims them at once
 * ({@link reclaimPredecessor}), before it allocates anything. Time comes in as `nowMs`.
 *
 * @module
 */

import { fail, type Failure, ok, type Result } from "../dispatch/errors.ts";
import { BlockState, F, ownerOf, stateOf } from "./block.ts";
import {
  fenced,
  fenceFor,
  FenceReason,
  type FenceRecord,
  fenceRecord,
  incarnationOf,
  type Suspect,
} from "./fence.ts";
import { blockWord, HOST, hostWord, type RegionLayout } from "./layout.ts";
import type { RegionMemory } from "./memory.ts";
import type { Step, StpContext } from "./steps.ts";

/** The clock as a heartbeat word: `nowMs` modulo 2^32, never 0 (0 means "slot free"). */
export function heartbeatOf(nowMs: number): number {
  const word = (nowMs % 0x1_0000_0000) | 0;
  return word === 0 ? 1 : word;
}

/** Whether a heartbeat word is a live lease at `nowMs`. */
export function beatAlive(beat: number, nowMs: number, leaseMs: number): boolean {
  if (beat === 0) return false;
  const ageMs = (heartbeatOf(nowMs) - beat) | 0;
  return ageMs <= leaseMs && ageMs >= -leaseMs;
}

/**
 * The clock to judge a heartbeat just loaded against: read now ({@link StpContext.readClockMs})
 * when the caller gave a clock, so a renewal the host made while the caller stalled since it
 * made `ctx` is never ahead of it; else the context's `nowMs`.
 *
 * @param ctx the reader, after it loaded the heartbeat
 * @returns the wall clock in milliseconds
 */
function clockAfterLoadMs(ctx: Pick<StpContext, "nowMs" | "readClockMs">): number {
  return ctx.readClockMs?.() ?? ctx.nowMs;
}

/**
 * Whether another host holds its lease, for a caller that may have stalled since it made `ctx`:
 * the clock is read again ({@link StpContext.readClockMs}) after the heartbeat is loaded, so a
 * renewal made during the stall counts as the live lease it is.
 *
 * @param ctx the reader
 * @param hostId the host (1..hostCount)
 * @returns true while the host holds its lease and is not fenced
 */
export function hostAliveNow(ctx: StpContext, hostId: number): boolean {
  if (hostId < 1 || hostId > ctx.layout.hostCount) return false;
  const beat = ctx.memory.load(hostWord(ctx.layout, hostId, HOST.heartbeat));
  return beatAlive(beat, clockAfterLoadMs(ctx), ctx.layout.leaseMs) &&
    !fenced(ctx.memory, ctx.layout, hostId);
}

/**
 * Why a connection's peer host cannot be counted on any more, if so: fenced, replaced (its slot
 * holds another incarnation than the one the connection was opened with), lease run out
 * (ECONNRESET), or a heartbeat ahead of the clock by more than a lease, a value no live host
 * writes (EPROTO; the host is fenced).
 *
 * @param ctx the reader
 * @param peer the peer host and the incarnation the connection was opened with
 * @returns the failure, or undefined while the peer is alive
 */
export function peerHostFailure(ctx: StpContext, peer: Suspect): Failure | undefined {
  const { memory, layout } = ctx;
  const { hostId } = peer;
  if (fenced(memory, layout, hostId)) {
    return fail("ECONNRESET", `peer host ${hostId} was fenced`);
  }
  const incarnation = incarnationOf(memory, layout, hostId);
  if (incarnation !== peer.incarnation) {
    return fail(
      "ECONNRESET",
      `peer host ${hostId} is incarnation ${incarnation} now, not ${peer.incarnation}: its ` +
        "holder was replaced",
    );
  }
  const word = hostWord(layout, hostId, HOST.heartbeat);
  const beat = memory.load(word);
  const nowMs = clockAfterLoadMs(ctx); // only a value no live host writes is ahead of it
  if (beatAlive(beat, nowMs, layout.leaseMs)) return undefined;
  const aheadMs = -((heartbeatOf(nowMs) - beat) | 0);
  if (beat !== 0 && aheadMs > layout.leaseMs) {
    return fenceFor(ctx, {
      suspect: peer,
      reason: FenceReason.heartbeat,
      word,
      value: beat,
      why: `${aheadMs} ms ahead of the clock, more than the ${layout.leaseMs} ms lease`,
    });
  }
  return fail("ECONNRESET", `peer host ${hostId} lost its lease`);
}

/** A host slot this process holds. */
export interface HostClaim {
  /** The slot, 1..hostCount: the owner id in the blocks this host allocates. */
  readonly hostId: number;
  /** How many times the slot has been claimed, this claim included. */
  readonly incarnation: number;
  /** The heartbeat word this host wrote last (renewals expect it). */
  readonly beat: number;
}

/**
 * Claims a host slot: the first free one, else the first whose lease ran out. Two claimers
 * never get the same slot (each claim is a compare-and-exchange of the heartbeat word). Each
 * slot's heartbeat is judged against a clock read after it was loaded (`readClockMs`, when
 * given), so a live host that renewed while the claimer stalled is not taken for dead (its
 * renewal would look ahead of a stale clock); the claim's own heartbeat is that fresh clock.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param nowMs the wall clock in milliseconds (when no `readClockMs` is given)
 * @param pid a label shown by `region show` (a process id; 0 when unknown)
 * @param readClockMs reads the wall clock now, in milliseconds (the adapter's clock)
 * @returns the claim, or ENOBUFS when every slot is held by a live host
 */
export function* claimHost(
  memory: RegionMemory,
  layout: RegionLayout,
  nowMs: number,
  pid: number,
  readClockMs?: () => number,
): Step<Result<HostClaim>> {
  const clock = { nowMs, readClockMs };
  for (const wantFree of [true, false]) {
    for (let hostId = 1; hostId <= layout.hostCount; hostId++) {
      const index = hostWord(layout, hostId, HOST.heartbeat);
      const old = memory.load(index);
      const clockMs = clockAfterLoadMs(clock);
      if (wantFree ? old !== 0 : old === 0 || beatAlive(old, clockMs, layout.leaseMs)) continue;
      yield;
      const beat = heartbeatOf(clockMs);
      if (memory.compareExchange(index, old, beat) !== old) continue;
      const incarnation = (memory.add(hostWord(layout, hostId, HOST.incarnation), 1) + 1) | 0;
      memory.store(hostWord(layout, hostId, HOST.pid), pid | 0);
      return ok({ hostId, incarnation, beat });
    }
  }
  return fail("ENOBUFS", `no free host slot: all ${layout.hostCount} are held by live hosts`);
}

/**
 * Renews a host's lease.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param hostId the host's slot
 * @param lastBeat the heartbeat this host wrote last
 * @param nowMs the wall clock in milliseconds
 * @returns the new heartbeat, or ECONNRESET when the slot no longer holds `lastBeat` (the lease
 *   ran out and the slot was reclaimed or taken over)
 */
export function renewLease(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
  lastBeat: number,
  nowMs: number,
): Result<number> {
  const next = heartbeatOf(nowMs);
  const index = hostWord(layout, hostId, HOST.heartbeat);
  const found = memory.compareExchange(index, lastBeat, next);
  if (found !== lastBeat) {
    return fail(
      "ECONNRESET",
      `host slot ${hostId} was reclaimed (heartbeat ${found}, expected ${lastBeat}): lease lost`,
    );
  }
  return ok(next);
}

/** Gives up a host's slot (its remaining blocks become reclaimable at once), if still held. */
export function releaseHost(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
  lastBeat: number,
): void {
  memory.compareExchange(hostWord(layout, hostId, HOST.heartbeat), lastBeat, 0);
}

/** States a block can stay in after its owner died without anyone needing the owner alive. */
const OWNERLESS: ReadonlySet<number> = new Set([
  BlockState.free,
  BlockState.closed,
  BlockState.reset,
]);

/**
 * Frees the slots of dead hosts that hold no block any more (blocks `closed` or `reset` are
 * freed with their pair, whoever owns them). Run after a sweep has reclaimed dead hosts' blocks.
 *
 * @param ctx the sweeping host
 * @returns how many slots were freed
 */
export function* freeDeadSlots(ctx: StpContext): Step<number> {
  const { memory, layout } = ctx;
  const holding = new Set<number>();
  for (let b = 0; b < layout.blockCount; b++) {
    const word = memory.load(blockWord(layout, b, F.state));
    if (!OWNERLESS.has(stateOf(word))) holding.add(ownerOf(word));
  }
  let freed = 0;
  for (let hostId = 1; hostId <= layout.hostCount; hostId++) {
    const index = hostWord(layout, hostId, HOST.heartbeat);
    const beat = memory.load(index);
    if (beat === 0 || hostAliveNow(ctx, hostId) || holding.has(hostId)) continue;
    yield;
    if (memory.compareExchange(index, beat, 0) === beat) freed++;
  }
  return freed;
}

/** One host slot as `region show` reports it. */
export interface HostSlot {
  /** The slot, 1..hostCount. */
  readonly hostId: number;
  /**
   * `free`, `live` (lease held), `dead` (lease ran out, not yet reclaimed) or `fenced` (its
   * records were found inconsistent: dead whatever its heartbeat says; `fence` says why).
   */
  readonly status: "free" | "live" | "dead" | "fenced";
  /** How many times the slot has been claimed. */
  readonly incarnation: number;
  /** The process id its holder recorded (0 when unknown). */
  readonly pid: number;
  /** Milliseconds since the last renewal; null for a free slot. */
  readonly leaseAgeMs: number | null;
  /** The slot's last fence record (of this incarnation or an earlier one), or null if never. */
  readonly fence: FenceRecord | null;
}

/**
 * Reads every host slot.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param nowMs the wall clock in milliseconds
 * @returns the slots 1..hostCount
 */
export function hostSlots(memory: RegionMemory, layout: RegionLayout, nowMs: number): HostSlot[] {
  const slots: HostSlot[] = [];
  for (let hostId = 1; hostId <= layout.hostCount; hostId++) {
    const beat = memory.load(hostWord(layout, hostId, HOST.heartbeat));
    const fence = fenceRecord(memory, layout, hostId);
    const status = beat === 0
      ? "free"
      : fence?.current === true
      ? "fenced"
      : beatAlive(beat, nowMs, layout.leaseMs)
      ? "live"
      : "dead";
    slots.push({
      hostId,
      status,
      incarnation: memory.load(hostWord(layout, hostId, HOST.incarnation)) >>> 0,
      pid: memory.load(hostWord(layout, hostId, HOST.pid)) >>> 0,
      leaseAgeMs: beat === 0 ? null : (heartbeatOf(nowMs) - beat) | 0,
      fence,
    });
  }
  return slots;
}
