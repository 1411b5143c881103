/**
 * Host leases. Each host (1..hostCount) has a heartbeat word in the host table: the low 32 bits
 * of the wall clock in milliseconds at its last renewal (0 = not registered). A host is alive
 * while its heartbeat is at most `leaseMs` old; the blocks a dead host owns (the owner bits of
 * their state words) are reclaimable by anyone. Time comes in as `nowMs`.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";
import { HOST, hostWord, type RegionLayout } from "./layout.ts";
import type { RegionMemory } from "./memory.ts";

/** The clock as a heartbeat word: `nowMs` modulo 2^32, never 0 (0 means "not registered"). */
export function heartbeatOf(nowMs: number): number {
  const word = (nowMs % 0x1_0000_0000) | 0;
  return word === 0 ? 1 : word;
}

/**
 * Whether a host holds its lease at `nowMs`.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param hostId the host (1..hostCount)
 * @param nowMs the wall clock in milliseconds
 * @returns true while the last heartbeat is within `leaseMs` of `nowMs`
 */
export function hostAlive(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
  nowMs: number,
): boolean {
  if (hostId < 1 || hostId > layout.hostCount) return false;
  const beat = memory.load(hostWord(layout, hostId, HOST.heartbeat));
  if (beat === 0) return false;
  const ageMs = (heartbeatOf(nowMs) - beat) | 0;
  return ageMs <= layout.leaseMs && ageMs >= -layout.leaseMs;
}

/** Renews a host's lease. */
export function renewLease(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
  nowMs: number,
): void {
  memory.store(hostWord(layout, hostId, HOST.heartbeat), heartbeatOf(nowMs));
}

/**
 * Registers a host: takes its lease and counts a new incarnation. The caller then reclaims the
 * blocks a previous incarnation of the same id left behind (`reclaimHost`).
 *
 * @returns the incarnation number, EINVAL for an id outside 1..hostCount, or EADDRINUSE when
 *   another live host holds the id
 */
export function registerHost(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
  nowMs: number,
): Result<number> {
  if (!Number.isInteger(hostId) || hostId < 1 || hostId > layout.hostCount) {
    return fail("EINVAL", `host id ${hostId} is outside 1..${layout.hostCount}`);
  }
  const heartbeat = hostWord(layout, hostId, HOST.heartbeat);
  const beat = memory.load(heartbeat);
  if (hostAlive(memory, layout, hostId, nowMs)) {
    return fail("EADDRINUSE", `host id ${hostId} is held by a live host`);
  }
  if (memory.compareExchange(heartbeat, beat, heartbeatOf(nowMs)) !== beat) {
    return fail("EADDRINUSE", `host id ${hostId} was registered concurrently`);
  }
  return ok(memory.add(hostWord(layout, hostId, HOST.incarnation), 1) + 1);
}

/** Gives up a host's lease: its remaining blocks become reclaimable at once. */
export function unregisterHost(memory: RegionMemory, layout: RegionLayout, hostId: number): void {
  memory.store(hostWord(layout, hostId, HOST.heartbeat), 0);
}
