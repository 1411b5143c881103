/**
 * What the handshake properties require of a simulated run's outcome, shared by the suite's
 * properties: a run that broke a rule fails with the facts (violations, both ends, the faults
 * that fired, the last calls).
 *
 * @module
 */

import type { SimOutcome } from "../src/core/handshake/sim.ts";

/** Calls of the transcript a failure shows, counted from the end. */
const TRANSCRIPT_TAIL = 12;

/**
 * Throws an error naming `what`, with the run's violations, ends, faults and last calls.
 *
 * @param outcome the run
 * @param what the rule broken, as a sentence
 */
export function failWith(outcome: SimOutcome, what: string): never {
  const tail = outcome.transcript.slice(-TRANSCRIPT_TAIL).join("\n  ");
  throw new Error(
    `${what}\nviolations: ${outcome.violations.join("; ")}\nserver: ${
      JSON.stringify(outcome.server)
    }\nclient: ${JSON.stringify(outcome.client)}\nfired: ${
      JSON.stringify(outcome.fired)
    }\nlast calls:\n  ${tail}`,
  );
}

/** Throws when the run broke one of the simulation's end rules (leaks, silent disagreement). */
export function expectClean(outcome: SimOutcome): void {
  if (outcome.violations.length > 0) failWith(outcome, "the run broke a rule");
}

/** Throws unless the run is clean and both sides ended established. */
export function expectEstablished(outcome: SimOutcome): void {
  expectClean(outcome);
  if (outcome.server.status !== "established" || outcome.client.status !== "established") {
    failWith(outcome, "a run without faults must establish both sides");
  }
}
