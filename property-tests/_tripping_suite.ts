/**
 * A suite whose properties trip a core `invariant()` in each place a property can throw: in its
 * predicate, while generating an input, while being built, and in a promise nobody awaits; then
 * one property that holds. The runner tests use it to check that every such throw is that
 * property's failure, with what replays it, and that the run goes on.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import { invariant } from "../src/core/assert.ts";

/** The smallest input every tripping property fails on (inputs are 0..100). */
export const TRIP_AT = 50;

const below = (n: number) => invariant(n < TRIP_AT, `input ${n} < ${TRIP_AT}`);

/**
 * The tripping suite.
 *
 * @returns five properties: predicate, generation, build, escaped promise, and one that holds
 */
export function trippingSuite(): Suite {
  return {
    name: "tripping",
    properties: [
      defineProperty(
        "trips an invariant in its predicate",
        { numRuns: 40 },
        () => fc.property(fc.nat(100), below),
      ),
      defineProperty(
        "trips an invariant while generating its input",
        { numRuns: 40 },
        () =>
          fc.property(
            fc.nat(100).map((n) => {
              below(n);
              return n;
            }),
            () => {},
          ),
      ),
      defineProperty("trips an invariant while being built", { numRuns: 40 }, () => {
        invariant(false, "this property cannot be built");
      }),
      defineProperty(
        "lets an invariant escape in a promise nobody awaits",
        { numRuns: 40 },
        () =>
          fc.asyncProperty(fc.nat(100), async (n) => {
            void Promise.resolve().then(() => below(n));
            await Promise.resolve();
          }),
      ),
      defineProperty("holds", { numRuns: 5 }, () => fc.property(fc.nat(), () => true)),
    ],
  };
}
