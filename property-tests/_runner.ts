/**
 * Runs conformance suites and reports one result per property: runs, time, pass or fail, and on
 * failure the counterexample with the seed and path that replay it. Runtime-agnostic (no Deno):
 * the CLI, the HTTP endpoint and the bundle share it.
 *
 * @module
 */

import type { CheckDetails, CheckParameters, Suite } from "./_suite.ts";
import { failureReport, isModelBasedReport } from "./_suite.ts";
import type { SuitesPort } from "../src/adapters/http.ts";

/** What to run and how. */
export interface RunOptions {
  /** Runs per property; the property's own default when absent. */
  readonly runs?: number;
  /** The seed; fast-check picks one when absent. */
  readonly seed?: number;
  /** A replay path (needs the seed of the failing run and a single property). */
  readonly path?: string;
  /** Only properties whose name contains this text. */
  readonly property?: string;
  /** Stop starting new properties after this many ms (a running one finishes). */
  readonly budgetMs?: number;
}

/** The outcome of one property. */
export interface PropertyResult {
  /** The suite's name. */
  readonly suite: string;
  /** The property, as a sentence. */
  readonly property: string;
  /** Whether it held (a skipped property counts as passed). */
  readonly passed: boolean;
  /** Runs made. */
  readonly runs: number;
  /** How long it ran, ms. */
  readonly timeMs: number;
  /** The seed of the run (0 when skipped or refused). */
  readonly seed: number;
  /** Present on failure: fast-check's report (counterexample, seed, path). */
  readonly report?: string;
  /** Present on failure: the path that replays the shrunk counterexample. */
  readonly path?: string;
  /** Present on failure: the options that replay it (seed with path, or seed with runs). */
  readonly replay?: { readonly seed: number; readonly path?: string; readonly runs?: number };
  /** Present when the budget ran out before this property started. */
  readonly skipped?: boolean;
}

/**
 * Runs every property of the given suites, one after the other.
 *
 * @param suites the suites, already bound to implementations
 * @param options runs, seed, path, property filter, time budget
 * @returns one result per property, in order
 *
 * @example
 * ```ts
 * import { runSuites } from "./_runner.ts";
 * import { descriptorSuite } from "./dispatch_suite.ts";
 * const results = await runSuites([descriptorSuite()], { runs: 10, seed: 1 });
 * console.assert(results.every((result) => result.passed));
 * ```
 */
export async function runSuites(
  suites: readonly Suite[],
  options: RunOptions = {},
): Promise<PropertyResult[]> {
  const results: PropertyResult[] = [];
  const started = performance.now();
  for (const suite of suites) {
    for (const property of suite.properties) {
      if (options.property !== undefined && !property.name.includes(options.property)) continue;
      const base = { suite: suite.name, property: property.name };
      if (options.budgetMs !== undefined && performance.now() - started > options.budgetMs) {
        results.push({ ...base, passed: true, runs: 0, timeMs: 0, seed: 0, skipped: true });
        continue;
      }
      const parameters: CheckParameters = {
        ...(options.runs === undefined ? {} : { numRuns: options.runs }),
        ...(options.seed === undefined ? {} : { seed: options.seed }),
        ...(options.path === undefined ? {} : { path: options.path }),
      };
      const propertyStarted = performance.now();
      results.push(await checkOne(base, () => property.check(parameters), propertyStarted));
    }
  }
  return results;
}

async function checkOne(
  base: { suite: string; property: string },
  check: () => Promise<CheckDetails>,
  started: number,
): Promise<PropertyResult> {
  let details: CheckDetails;
  try {
    details = await check();
  } catch (error) {
    // fast-check throws for a replay path that does not fit the property.
    const message = error instanceof Error ? error.message : String(error);
    return {
      ...base,
      passed: false,
      runs: 0,
      timeMs: performance.now() - started,
      seed: 0,
      report: message,
    };
  }
  const timeMs = performance.now() - started;
  const report = failureReport(details);
  if (report === undefined) {
    return { ...base, passed: true, runs: details.numRuns, timeMs, seed: details.seed };
  }
  const path = details.counterexamplePath ?? "";
  const replay = isModelBasedReport(report)
    ? { seed: details.seed, runs: details.numRuns }
    : { seed: details.seed, path };
  return {
    ...base,
    passed: false,
    runs: details.numRuns,
    timeMs,
    seed: details.seed,
    report,
    path,
    replay,
  };
}

/**
 * The HTTP app's port onto conformance suites: `POST /v1/conformance` runs the suites whose name
 * starts with the one asked for (all without one), within the app's time budget.
 *
 * @param suites the suites on offer
 * @returns the port for `ControlServices.suites`
 */
export function suitesPort(suites: () => readonly Suite[]): SuitesPort {
  return {
    async run(options) {
      const chosen = suites().filter((suite) =>
        options.suite === undefined || suite.name.startsWith(options.suite)
      );
      if (chosen.length === 0) return undefined;
      const results = await runSuites(chosen, {
        runs: options.runs,
        seed: options.seed,
        budgetMs: options.budgetMs,
      });
      return { passed: results.every((result) => result.passed), results };
    },
  };
}
