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

/** Parameters a runner passes to a property (fast-check's own: numRuns, seed, path, ...). */
export type CheckParameters = fc.Parameters<unknown>;

/** The outcome of one property run: fast-check's details (seed, path, counterexample). */
export type CheckDetails = fc.RunDetails<unknown>;

/** One property of a suite. */
export interface SuiteProperty {
  /** What must hold, as a sentence. */
  readonly name: string;
  /** Runs the property; resolves with the details, failed or not (never rejects on failure). */
  check(parameters: CheckParameters): Promise<CheckDetails>;
}

/** A named list of properties over one implementation. */
export interface Suite {
  readonly name: string;
  readonly properties: readonly SuiteProperty[];
}

/**
 * Declares a property from a builder of a fast-check (async) property. The builder runs once
 * per check, so each check gets fresh state.
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
      const merged = { ...defaults, ...parameters } as fc.Parameters<unknown>;
      return await fc.check(build() as fc.IAsyncProperty<unknown>, merged);
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
  const report = fc.defaultReportMessage(details) ?? "property failed";
  const cause = details.errorInstance;
  const because = cause instanceof Error ? cause.message : cause === null ? "" : String(cause);
  return because.length > 0 && !report.includes(because)
    ? `${report}\nbecause: ${because}`
    : report;
}
