/**
 * What a region has handed out: blocks in use, ports held, extents held. After every socket has
 * closed, a region's usage equals that of a freshly formatted one (all empty).
 *
 * @module
 */

import { BlockState, F, stateOf } from "./block.ts";
import { blockWord, extentWord, PORT_WORDS, portWord, type RegionLayout } from "./layout.ts";
import { plainMemory, type RegionMemory } from "./memory.ts";
import { attachRegion } from "./region.ts";
import { ok, type Result } from "../dispatch/errors.ts";

/** The resources in use in a region. */
export interface RegionUsage {
  /** Indices of blocks that are not free. */
  readonly blocks: number[];
  /** `stgId:port` of every port held. */
  readonly ports: string[];
  /** Indices of extents held by a ring. */
  readonly extents: number[];
}

/**
 * Scans a region for resources in use.
 *
 * @param memory the region memory
 * @param layout its layout
 * @returns the blocks, ports and extents in use
 *
 * @example A fresh region uses nothing
 * ```ts
 * import { attachRegion, formatRegion } from "./region.ts";
 * import { plainMemory } from "./memory.ts";
 * import { regionUsage } from "./usage.ts";
 * const buffer = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100,
 *   backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!buffer.ok) throw new Error(buffer.message);
 * const layout = attachRegion(buffer.value);
 * if (!layout.ok) throw new Error(layout.message);
 * const usage = regionUsage(plainMemory(buffer.value), layout.value);
 * console.assert(usage.blocks.length === 0 && usage.ports.length === 0);
 * ```
 */
export function regionUsage(memory: RegionMemory, layout: RegionLayout): RegionUsage {
  const blocks: number[] = [];
  for (let b = 0; b < layout.blockCount; b++) {
    if (stateOf(memory.load(blockWord(layout, b, F.state))) !== BlockState.free) blocks.push(b);
  }
  const ports: string[] = [];
  for (const stg of layout.stgs) {
    for (let port = 0; port < PORT_WORDS; port++) {
      if (memory.load(portWord(layout, stg.index, port)) !== 0) ports.push(`${stg.id}:${port}`);
    }
  }
  const extents: number[] = [];
  for (let e = 0; e < layout.extentCount; e++) {
    if (memory.load(extentWord(layout, e)) !== 0) extents.push(e);
  }
  return { blocks, ports, extents };
}

/**
 * The usage of the region held in `buffer`, validated first: for tests, metrics and janitors
 * that hold the region's bytes rather than a host.
 *
 * @param buffer the region's bytes
 * @returns its layout and usage, or the attach failure
 *
 * @example
 * ```ts
 * import { formatRegion } from "./region.ts";
 * import { usageOfBuffer } from "./usage.ts";
 * const buffer = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100, backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!buffer.ok) throw new Error(buffer.message);
 * const usage = usageOfBuffer(buffer.value);
 * console.assert(usage.ok && usage.value.blocks.length === 0);
 * ```
 */
export function usageOfBuffer(
  buffer: ArrayBufferLike,
): Result<RegionUsage & { readonly layout: RegionLayout }> {
  const layout = attachRegion(buffer);
  if (!layout.ok) return layout;
  return ok({ ...regionUsage(plainMemory(buffer), layout.value), layout: layout.value });
}
