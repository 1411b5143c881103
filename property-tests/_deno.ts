/**
 * Registers a conformance suite with `Deno.test`, one test per property. A failure throws
 * fast-check's report: counterexample, seed and path. `LANFREE_FC_SEED`, `LANFREE_FC_PATH` and
 * `LANFREE_FC_RUNS` in the environment replay or widen a run.
 *
 * @module
 */

import { type CheckParameters, failureReport, type Suite } from "./_suite.ts";

function parametersFromEnvironment(): CheckParameters {
  const permission = Deno.permissions.querySync({ name: "env" });
  if (permission.state !== "granted") return {};
  const seed = Deno.env.get("LANFREE_FC_SEED");
  const path = Deno.env.get("LANFREE_FC_PATH");
  const runs = Deno.env.get("LANFREE_FC_RUNS");
  return {
    ...(seed === undefined ? {} : { seed: Number(seed) }),
    ...(path === undefined ? {} : { path }),
    ...(runs === undefined ? {} : { numRuns: Number(runs) }),
  };
}

/**
 * Registers every property of `suite` as a Deno test named `suite: property`.
 *
 * @param suite the suite, already bound to the implementation under test
 * @param parameters fast-check parameters for every property (the environment overrides them)
 */
export function registerSuite(suite: Suite, parameters: CheckParameters = {}): void {
  for (const property of suite.properties) {
    Deno.test(`${suite.name}: ${property.name}`, async () => {
      const details = await property.check({ ...parameters, ...parametersFromEnvironment() });
      const report = failureReport(details);
      if (report !== undefined) throw new Error(`${suite.name}: ${property.name}\n${report}`);
    });
  }
}
