/**
 * The SharedArrayBuffer region implementation: a {@link Region} over a buffer, and the
 * {@link RegionFactory} the conformance suites take.
 *
 * @module
 */

import { ok, type Result } from "../core/dispatch/errors.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import { attachRegion, formatRegion, type Region, type RegionFactory } from "../core/stp/region.ts";
import { atomicsMemory, atomicsWait, defaultWaitMode, type WaitMode } from "./shm_memory.ts";

/**
 * Attaches a SharedArrayBuffer region: validates it, then wraps it in Atomics memory.
 *
 * @param buffer a region formatted by `formatRegion`
 * @param waitMode how hosts wait on it (default: `async`)
 * @returns the region, or EINVAL saying what is wrong with the buffer
 *
 * @example
 * ```ts
 * import { sharedRegion } from "./shm_region.ts";
 * import { formatRegion } from "../core/stp/region.ts";
 * const buffer = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100,
 *   backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!buffer.ok) throw new Error(buffer.message);
 * const region = sharedRegion(buffer.value);
 * console.assert(region.ok && await region.value.wait?.(0, 0, 1) === "not-equal");
 * ```
 */
export function sharedRegion(
  buffer: SharedArrayBuffer,
  waitMode: WaitMode = defaultWaitMode(),
): Result<Region> {
  const layout = attachRegion(buffer);
  if (!layout.ok) return layout;
  const { memory, words } = atomicsMemory(buffer);
  return ok({
    memory,
    layout: layout.value,
    wait: atomicsWait(words, waitMode),
    view: (byteOffset, length) => new Uint8Array(buffer, byteOffset, length),
  });
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
    return buffer.ok ? sharedRegion(buffer.value) : buffer;
  },
  attach(bytes: Uint8Array): Result<Region> {
    const buffer = new SharedArrayBuffer(bytes.length);
    new Uint8Array(buffer).set(bytes);
    return sharedRegion(buffer);
  },
};
