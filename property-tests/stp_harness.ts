/**
 * Shared helpers of the STP suites: a small region configuration, host contexts over a region
 * from the factory under test, and result unwrapping. Runtime-agnostic (no Deno APIs).
 *
 * @module
 */

import type { Result } from "../src/core/dispatch/errors.ts";
import { F } from "../src/core/stp/block.ts";
import { blockWord } from "../src/core/stp/layout.ts";
import * as ops from "../src/core/stp/ops.ts";
import { openRingEnd, type RingEnd } from "../src/core/stp/ring.ts";
import { claimHost } from "../src/core/stp/hosts.ts";
import type { RegionConfig } from "../src/core/stp/layout.ts";
import type { Region, RegionFactory } from "../src/core/stp/region.ts";
import { ok } from "../src/core/dispatch/errors.ts";
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

/**
 * Runs `body` on a fresh region with `count` hosts, then closes the region (when the body's
 * promise settles, for an async body), whatever happened.
 */
export function withHosts<T>(
  factory: RegionFactory,
  config: RegionConfig,
  count: number,
  body: (setup: { region: Region; hosts: StpContext[] }) => T,
): T {
  const setup = hostsOn(factory, config, count);
  let result: T;
  try {
    result = body(setup);
  } catch (error) {
    setup.region.close?.();
    throw error;
  }
  if (result instanceof Promise) return result.finally(() => setup.region.close?.()) as T;
  setup.region.close?.();
  return result;
}

/** A connection between two hosts of a region, seen from both ends. */
export interface ConnectedPair {
  /** The connecting host's block and its ring end (it sends). */
  readonly sender: { readonly ctx: StpContext; readonly ref: ops.BlockRef; readonly end: RingEnd };
  /** The accepted block and its ring end (it receives). */
  readonly receiver: {
    readonly ctx: StpContext;
    readonly ref: ops.BlockRef;
    readonly end: RingEnd;
  };
}

/**
 * Connects host `b` to a listener of host `a` on STG 1, port 9, with both ring counters of the
 * sender's direction starting at `start` (to cross 2^31 and 2^32 in a short transfer).
 */
export function connectedPair(
  region: Region,
  a: StpContext,
  b: StpContext,
  start = 0,
): ConnectedPair {
  const listener = value(runSteps(ops.allocate(a, 0)));
  value(runSteps(ops.bind(a, listener, 1, 9)));
  value(runSteps(ops.listen(a, listener, 1)));
  const connector = value(runSteps(ops.allocate(b, 0)));
  value(runSteps(ops.connect(b, connector, 1, 9)));
  const got = value(runSteps(ops.accept(a, listener)));
  if (got.kind !== "ready") throw new Error("accept did not pair");
  const accepted = got.value.block;
  region.memory.store(blockWord(region.layout, connector.index, F.txTail), start);
  region.memory.store(blockWord(region.layout, accepted.index, F.rxHead), start);
  return {
    sender: { ctx: b, ref: connector, end: value(openRingEnd(b, connector)) },
    receiver: { ctx: a, ref: accepted, end: value(openRingEnd(a, accepted)) },
  };
}

/** `length` bytes of a pattern that differs with `salt`. */
export function patternBytes(length: number, salt: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + salt) & 0xff);
}

/**
 * A factory whose regions are another factory's, each changed by `change` once created or
 * attached (a deliberately broken implementation, in the mutant tests).
 *
 * @param name the new factory's name
 * @param base the factory whose regions are changed
 * @param change makes the changed region from the base one
 * @returns the factory
 */
export function changedRegions(
  name: string,
  base: RegionFactory,
  change: (region: Region) => Region,
): RegionFactory {
  return {
    name,
    create(config) {
      const region = base.create(config);
      return region.ok ? ok(change(region.value)) : region;
    },
    attach(bytes) {
      const region = base.attach(bytes);
      return region.ok ? ok(change(region.value)) : region;
    },
  };
}
