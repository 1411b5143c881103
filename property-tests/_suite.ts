/**
 * The shape every conformance suite shares: a named list of fast-check properties, each run
 * with caller-chosen parameters (runs, seed, path) and reporting fast-check's run details, so
 * the same suite serves `deno test`, the conformance runner, the HTTP endpoint and the bundle.
 *
 * Suites import nothing from Deno: they take the implementation under test as an argument.
 *
 * @module
 */

import fc from "fast-check";
import { EscapedError, guardedProperty, type StrayErrors } from "./_guard.ts";

export type { StrayErrors } from "./_guard.ts";

/**
 * Parameters a runner passes to a property: fast-check's `Parameters`. The ones lanfree's
 * runners set are named; any other fast-check parameter passes through to `fc.check` as is.
 */
export interface CheckParameters {
  /** How many runs. */
  readonly numRuns?: number;
  /** The seed that makes a run reproducible. */
  readonly seed?: number;
  /** The replay path of a failing run (with that run's seed). */
  readonly path?: string;
  /**
   * lanfree's own, not fast-check's: where errors that escape the property are collected.
   * Given, each run waits for escaped errors and fails when one escaped during it (slower: a
   * runner passes it only to find the run a stray error came from).
   */
  readonly strays?: StrayErrors;
  /** Any other fast-check parameter. */
  readonly [parameter: string]: unknown;
}

/**
 * The outcome of one property run: fast-check's `RunDetails`, as `fc.check` resolves it (a
 * {@link SuiteProperty} of your own returns that value as is). {@link failureReport} turns a
 * failed one into fast-check's report.
 */
export interface CheckDetails {
  /** Whether the property failed (a counterexample, too many skips, or an interruption). */
  readonly failed: boolean;
  /** Whether the run stopped early (a time limit). */
  readonly interrupted: boolean;
  /** Runs made before success or the first failure. */
  readonly numRuns: number;
  /** Generated values skipped by preconditions. */
  readonly numSkips: number;
  /** Shrinking steps taken from the first failure to the reported one. */
  readonly numShrinks: number;
  /** The seed of this run. */
  readonly seed: number;
  /** The shrunk failing input, or `null`. */
  readonly counterexample: unknown;
  /** What the failing run threw, or `null`. */
  readonly errorInstance: unknown;
  /** The path that replays the counterexample (with {@link CheckDetails.seed}), or `null`. */
  readonly counterexamplePath: string | null;
  /** Every failing input met while shrinking (when verbose). */
  readonly failures: readonly unknown[];
  /** The tree of runs (when verbose). */
  readonly executionSummary: readonly unknown[];
  /** fast-check's verbosity level for the report (0, 1 or 2). */
  readonly verbose: number;
  /** The parameters the run used. */
  readonly runConfiguration: unknown;
}

/** One property of a suite. */
export interface SuiteProperty {
  /** What must hold, as a sentence. */
  readonly name: string;
  /**
   * Runs the property; resolves with the details, failed or not (never rejects on failure).
   *
   * @param parameters runs, seed, path and any other fast-check parameter
   * @returns fast-check's run details
   */
  check(parameters: CheckParameters): Promise<CheckDetails>;
}

/** A named list of properties over one implementation. */
export interface Suite {
  /** Names the suite and the implementation under test (`"stp (SharedArrayBuffer)"`). */
  readonly name: string;
  /** The properties, run in order. */
  readonly properties: readonly SuiteProperty[];
}

/**
 * Declares a property from a builder of a fast-check (async) property. The builder runs once
 * per check, so each check gets fresh state. A throw while generating an input fails that run
 * like a throw in the predicate does (see `_guard.ts`).
 *
 * @param name what must hold
 * @param defaults parameters used unless the runner overrides them (for example a lower
 *   `numRuns` for properties that open real sockets)
 * @param build returns the fast-check property
 */
export function defineProperty(
  name: string,
  defaults: CheckParameters,
  // deno-lint-ignore no-explicit-any
  build: () => fc.IProperty<any> | fc.IAsyncProperty<any>,
): SuiteProperty {
  return {
    name,
    async check(parameters) {
      const { strays, ...merged } = { ...defaults, ...parameters };
      const property = guardedProperty(build() as fc.IRawProperty<unknown>, strays);
      return await fc.check(property, merged as fc.Parameters<unknown>);
    },
  };
}

/**
 * True when a failure comes from a model-based property (`fc.commands`). fast-check cannot
 * replay those by path alone, so they are replayed by seed and run count: generation is
 * deterministic for a seed, so the same failing run is found and shrunk again.
 */
export function isModelBasedReport(report: string): boolean {
  return report.includes("replayPath=");
}

/**
 * Turns failed details into the message fast-check prints: the counterexample, the seed and the
 * path that replay it.
 *
 * @returns the report, or `undefined` when the run passed
 */
export function failureReport(details: CheckDetails): string | undefined {
  if (!details.failed) return undefined;
  // CheckDetails is fast-check's RunDetails under a name of lanfree's own (see its doc).
  const report = fc.defaultReportMessage(details as fc.RunDetails<unknown>) ?? "property failed";
  const cause = details.errorInstance;
  const because = cause instanceof Error ? cause.message : cause === null ? "" : String(cause);
  const withCause = because.length > 0 && !report.includes(because)
    ? `${report}\nbecause: ${because}`
    : report;
  const where = whereThrown(cause instanceof EscapedError ? cause.errors[0] : cause);
  return where === "" ? withCause : `${withCause}\n${where}`;
}

/** Stack frames shown for a failing run's error (where an `invariant()` fired, say). */
const FRAMES_SHOWN = 4;

/** The first frames of an error's stack, indented; "" for a value that is not an Error. */
function whereThrown(error: unknown): string {
  if (!(error instanceof Error) || error.stack === undefined) return "";
  const frames = error.stack.split("\n").filter((line) => /^\s+at /.test(line));
  return frames.slice(0, FRAMES_SHOWN).map((line) => `  ${line.trim()}`).join("\n");
}
