/**
 * Which STG the side that sends the STG info offers (steps 138 / 236): one with room for the
 * job's rings, so the connection's `accept` does not fail for want of ring space. A region holds
 * several STGs, each with its own extents and port range; the one with the most free extents
 * wins (the lowest index among equals), which spreads concurrent jobs over the STGs.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";
import { extentWord, type RegionLayout, type StgLayout } from "./layout.ts";
import type { RegionMemory } from "./memory.ts";

/** Extents one storage connection takes: one ring per direction. */
export const RINGS_PER_CONNECTION = 2;

/** Free extents of an STG right now. */
export function freeExtents(memory: RegionMemory, layout: RegionLayout, stg: StgLayout): number {
  let free = 0;
  for (let e = stg.firstExtent; e < stg.firstExtent + stg.extentCount; e++) {
    if (memory.load(extentWord(layout, e)) === 0) free++;
  }
  return free;
}

/**
 * Picks the STG with the most free extents, among those with at least `ringsNeeded`.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param ringsNeeded extents the job's connections need (default one connection's two)
 * @returns the STG, or ENOBUFS naming each STG's free extents when none has room
 *
 * @example
 * ```ts
 * import { formatRegion, attachRegion } from "./region.ts";
 * import { plainMemory } from "./memory.ts";
 * import { pickStg } from "./stg_pick.ts";
 * const buffer = formatRegion({
 *   stgs: [
 *     { id: 1, extentCount: 2, ephemeralPortMin: 100, ephemeralPortMax: 110 },
 *     { id: 2, extentCount: 4, ephemeralPortMin: 200, ephemeralPortMax: 210 },
 *   ],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100, backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!buffer.ok) throw new Error(buffer.message);
 * const layout = attachRegion(buffer.value);
 * if (!layout.ok) throw new Error(layout.message);
 * const picked = pickStg(plainMemory(buffer.value), layout.value);
 * console.assert(picked.ok && picked.value.id === 2);
 * ```
 */
export function pickStg(
  memory: RegionMemory,
  layout: RegionLayout,
  ringsNeeded: number = RINGS_PER_CONNECTION,
): Result<StgLayout> {
  let best: { stg: StgLayout; free: number } | undefined;
  const seen: string[] = [];
  for (const stg of layout.stgs) {
    const free = freeExtents(memory, layout, stg);
    seen.push(`STG ${stg.id}: ${free}`);
    if (free >= ringsNeeded && (best === undefined || free > best.free)) best = { stg, free };
  }
  if (best === undefined) {
    return fail(
      "ENOBUFS",
      `no STG has room for ${ringsNeeded} rings (free extents: ${seen.join(", ")})`,
    );
  }
  return ok(best.stg);
}
