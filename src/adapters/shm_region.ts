/**
 * The SharedArrayBuffer region implementation as a {@link RegionFactory}, for the conformance
 * suites and for hosts that create their own region.
 *
 * @module
 */

import { ok, type Result } from "../core/dispatch/errors.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import { attachRegion, formatRegion, type Region, type RegionFactory } from "../core/stp/region.ts";
import { atomicsMemory } from "./shm_memory.ts";

/** Attaches a SharedArrayBuffer region: validates it, then wraps it in Atomics memory. */
function attachShared(buffer: SharedArrayBuffer): Result<Region> {
  const layout = attachRegion(buffer);
  if (!layout.ok) return layout;
  return ok({ memory: atomicsMemory(buffer).memory, layout: layout.value });
}

/**
 * Regions in SharedArrayBuffers, accessed with Atomics.
 *
 * @example Creating a region through the factory
 * ```ts
 * import { sharedArrayBufferRegions } from "./shm_region.ts";
 * const region = sharedArrayBufferRegions.create({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100,
 *   backlogMax: 2,
 * });
 * console.assert(region.ok && region.value.layout.blockCount === 4);
 * ```
 */
export const sharedArrayBufferRegions: RegionFactory = {
  name: "SharedArrayBuffer",
  create(config: RegionConfig): Result<Region> {
    const buffer = formatRegion(config, crypto.randomUUID());
    return buffer.ok ? attachShared(buffer.value) : buffer;
  },
  attach(bytes: Uint8Array): Result<Region> {
    const buffer = new SharedArrayBuffer(bytes.length);
    new Uint8Array(buffer).set(bytes);
    return attachShared(buffer);
  },
};
