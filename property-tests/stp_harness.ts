/**
 * Shared helpers of the STP suites: a small region configuration, host contexts over a region
 * from the factory under test, and result unwrapping. Runtime-agnostic (no Deno APIs).
 *
 * @module
 */

import type { Result } from "../src/core/dispatch/errors.ts";
import { claimHost } from "../src/core/stp/hosts.ts";
import type { RegionConfig } from "../src/core/stp/layout.ts";
import type { Region, RegionFactory } from "../src/core/stp/region.ts";
import { runSteps, type StpContext } from "../src/core/stp/steps.ts";

/** A region small enough to exhaust blocks, ports and extents in a few commands. */
export const SMALL_CONFIG: RegionConfig = {
  stgs: [
    { id: 1, extentCount: 4, ephemeralPortMin: 100, ephemeralPortMax: 102 },
    { id: 2, extentCount: 2, ephemeralPortMin: 200, ephemeralPortMax: 201 },
  ],
  extentBytes: 4096,
  blockCount: 6,
  hostCount: 3,
  ioTimeoutMs: 1000,
  leaseMs: 600_000,
  backlogMax: 2,
};

/** The fixed time every simulated host sees (leases never run out in the simulations). */
export const NOW_MS = 1_000_000;

/** Unwraps a result or throws its failure as an Error (inside properties only). */
export function value<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`${result.code}: ${result.message}`);
  return result.value;
}

/** A fresh region from the factory with `count` hosts claimed (slots 1..count). */
export function hostsOn(
  factory: RegionFactory,
  config: RegionConfig,
  count: number,
): { region: Region; hosts: StpContext[] } {
  const region = value(factory.create(config));
  const hosts: StpContext[] = [];
  for (let n = 1; n <= count; n++) {
    const { hostId } = value(runSteps(claimHost(region.memory, region.layout, NOW_MS, 0)));
    hosts.push({ memory: region.memory, layout: region.layout, hostId, nowMs: NOW_MS });
  }
  return { region, hosts };
}
