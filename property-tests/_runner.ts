/**
 * Runs conformance suites and reports one result per property: runs, time, pass or fail, and on
 * failure the counterexample with the seed and path that replay it. Runtime-agnostic (no Deno):
 * the CLI, the HTTP endpoint and the bundle share it.
 *
 * @module
 */

import fc from "fast-check";
import type { CheckDetails, CheckParameters, Suite, SuiteProperty } from "./_suite.ts";
import { failureReport, isModelBasedReport } from "./_suite.ts";
import { describeError, EscapedError, settle, type StrayErrors } from "./_guard.ts";
import type { SuitesPort } from "../src/adapters/http.ts";

/** What to run and how. */
export interface RunOptions {
  /** Runs per property; the property's own default when absent. */
  readonly runs?: number;
  /** The seed; the runner draws one per property when absent (and reports it). */
  readonly seed?: number;
  /** A replay path (needs the seed of the failing run and a single property). */
  readonly path?: string;
  /** Only properties whose name contains this text. */
  readonly property?: string;
  /** Stop starting new properties after this many ms (a running one finishes). */
  readonly budgetMs?: number;
  /**
   * Where the host collects errors that escape a property (unhandled rejections, errors thrown
   * in timers). Given, such an error fails the property it escaped from, and the property is
   * run again with the same seed to find the run it came from; without it, it is the host's.
   */
  readonly strays?: StrayErrors;
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
  /** The seed of the run (0 when skipped). */
  readonly seed: number;
  /** Present on failure: fast-check's report (counterexample, seed, path), or what was thrown. */
  readonly report?: string;
  /** Present on failure: the shrunk counterexample as fast-check prints it, when there is one. */
  readonly counterexample?: string;
  /** Present on failure: the path that replays the shrunk counterexample. */
  readonly path?: string;
  /** Present on failure: the options that replay it (seed with path, or seed with runs). */
  readonly replay?: { readonly seed: number; readonly path?: string; readonly runs?: number };
  /** Present when the budget ran out before this property started. */
  readonly skipped?: boolean;
}

/** A seed for a property run without one: drawn here so that every failure can name it. */
function freshSeed(): number {
  return (Math.random() * 0x1_0000_0000) | 0;
}

/**
 * Runs every property of the given suites, one after the other. Whatever a property throws
 * (an `invariant()` of a core included, or an error escaping it when `strays` is given) is that
 * property's failure, with the seed and the options that replay it; the run goes on.
 *
 * @param suites the suites, already bound to implementations
 * @param options runs, seed, path, property filter, time budget, stray-error collector
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
  const blameLast = (late: unknown[]) => {
    const last = results.at(-1);
    if (late.length > 0 && last !== undefined) {
      results[results.length - 1] = escapedLate(last, late);
    }
  };
  for (const suite of suites) {
    for (const property of suite.properties) {
      if (options.property !== undefined && !property.name.includes(options.property)) continue;
      const base = { suite: suite.name, property: property.name };
      if (options.budgetMs !== undefined && performance.now() - started > options.budgetMs) {
        results.push({ ...base, passed: true, runs: 0, timeMs: 0, seed: 0, skipped: true });
        continue;
      }
      blameLast(options.strays?.take() ?? []);
      const parameters: CheckParameters = {
        ...(options.runs === undefined ? {} : { numRuns: options.runs }),
        seed: options.seed ?? freshSeed(),
        ...(options.path === undefined ? {} : { path: options.path }),
      };
      results.push(await checkOne(base, property, parameters, options.strays));
    }
  }
  if (options.strays !== undefined) {
    await settle();
    blameLast(options.strays.take());
  }
  return results;
}

type Base = { readonly suite: string; readonly property: string };

async function checkOne(
  base: Base,
  property: SuiteProperty,
  parameters: CheckParameters,
  strays: StrayErrors | undefined,
): Promise<PropertyResult> {
  const started = performance.now();
  const seed = parameters.seed!;
  let details: CheckDetails;
  try {
    details = await property.check(parameters);
  } catch (error) {
    // Thrown outside fast-check's runs: building the property, or a replay path that does not
    // fit it. Replayed by the same options.
    const replay = {
      seed,
      ...(parameters.numRuns === undefined ? {} : { runs: parameters.numRuns }),
    };
    const report = `the property threw before fast-check could report a run: ${stackOf(error)}`;
    return {
      ...base,
      passed: false,
      runs: 0,
      timeMs: performance.now() - started,
      seed,
      report,
      replay,
    };
  }
  const escaped = strays === undefined ? [] : (await settle(), strays.take());
  if (escaped.length > 0 && !details.failed) {
    // Find the run the error escaped from: the same runs again, each waiting for strays.
    const again = await property.check({ ...parameters, numRuns: details.numRuns, strays });
    if (!again.failed) {
      const report = `${new EscapedError(escaped).message}\nnot reproduced run by run with ` +
        `seed ${seed} and ${details.numRuns} runs (it may depend on timing)`;
      const replay = { seed, runs: details.numRuns };
      return {
        ...base,
        passed: false,
        runs: details.numRuns,
        timeMs: performance.now() - started,
        seed,
        report,
        replay,
      };
    }
    details = again;
  }
  return fromDetails(base, details, performance.now() - started, escaped);
}

function fromDetails(
  base: Base,
  details: CheckDetails,
  timeMs: number,
  escaped: readonly unknown[],
): PropertyResult {
  const report = failureReport(details);
  if (report === undefined) {
    return { ...base, passed: true, runs: details.numRuns, timeMs, seed: details.seed };
  }
  const path = details.counterexamplePath ?? "";
  const replay = isModelBasedReport(report) || path === ""
    ? { seed: details.seed, runs: details.numRuns }
    : { seed: details.seed, path };
  const also = details.errorInstance instanceof EscapedError || escaped.length === 0
    ? ""
    : `\nalso: ${new EscapedError(escaped).message}`;
  return {
    ...base,
    passed: false,
    runs: details.numRuns,
    timeMs,
    seed: details.seed,
    report: report + also,
    ...(details.counterexample === null
      ? {}
      : { counterexample: fc.stringify(details.counterexample) }),
    path,
    replay,
  };
}

/** A result whose property let errors escape that were reported only after it ended. */
function escapedLate(result: PropertyResult, late: readonly unknown[]): PropertyResult {
  const note = `${new EscapedError(late).message}\n(reported after the property ended)`;
  if (!result.passed) return { ...result, report: `${result.report}\nalso: ${note}` };
  const replay = { seed: result.seed, runs: result.runs };
  return { ...result, passed: false, report: note, replay };
}

/** An error with the first lines of its stack (where an invariant fired), else as a string. */
function stackOf(error: unknown): string {
  if (!(error instanceof Error) || error.stack === undefined) return describeError(error);
  return error.stack.split("\n").slice(0, 6).join("\n");
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
