/**
 * The STP conformance suite, over a region factory: run it against any region implementation
 * (the SharedArrayBuffer one, a file-backed one later). Runtime-agnostic: no Deno APIs.
 *
 * @module
 */

import { defineProperty, type Suite } from "./_suite.ts";
import type { RegionFactory } from "../src/core/stp/region.ts";
import { cbtModelProperty } from "./stp_model_run.ts";
import { leaseModelProperty } from "./stp_model_lease.ts";
import { attachFuzzProperty, raceProperty, ringProperty } from "./stp_props.ts";
import { rogueHostProperty } from "./stp_rogue.ts";
import { waitNotifyProperty } from "./stp_wait.ts";
import { zeroCopyRingProperty } from "./stp_zero_copy.ts";

/**
 * Builds the STP suite for a region implementation.
 *
 * @param factory makes and attaches regions of the implementation under test
 * @returns the suite: CBT model, leases and backlogs in the model, races, ring, zero-copy ring,
 *   wait/notify, rogue host, attach fuzz
 */
export function stpSuite(factory: RegionFactory): Suite {
  return {
    name: `stp (${factory.name})`,
    properties: [
      defineProperty(
        "allocate/bind/listen/connect/accept/close from several hosts agree with the model",
        { numRuns: 150 },
        () => cbtModelProperty(factory),
      ),
      defineProperty(
        "leases run out, blocks are reclaimed and reused: stale references fail ECONNRESET, backlogs hold exactly",
        { numRuns: 150 },
        () => leaseModelProperty(factory),
      ),
      defineProperty(
        "concurrent allocations and connects never double-allocate nor lose a wake-up",
        { numRuns: 60 },
        () => raceProperty(factory),
      ),
      defineProperty(
        "the ring delivers exactly the bytes sent, in order, then end-of-stream",
        { numRuns: 100 },
        () => ringProperty(factory),
      ),
      defineProperty(
        "reserve/commit and peek/release move exactly the committed bytes, in order",
        { numRuns: 100 },
        () => zeroCopyRingProperty(factory),
      ),
      defineProperty(
        "a host waiting with the region's wait is woken by every notify: no lost wake-up",
        { numRuns: 25 },
        () => waitNotifyProperty(factory),
      ),
      defineProperty(
        "a rogue host writing random words anywhere in the region cannot make an honest host " +
          "crash, hang, leave its ring or share a block: every operation ends with a result or " +
          "a typed error",
        { numRuns: 1000 },
        () => rogueHostProperty(factory),
      ),
      defineProperty(
        "attach never crashes, hangs or reads outside the buffer on random or mutated bytes",
        { numRuns: 200 },
        () => attachFuzzProperty(factory),
      ),
    ],
  };
}
