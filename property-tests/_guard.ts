/**
 * Keeps a throw anywhere in a property a failure of that property. fast-check already reports a
 * predicate that throws (an `invariant()` of a core, say) as a failing run; two other places
 * could still escape it: the generation of an input (an arbitrary's `map` that throws, which
 * `fc.check` does not catch) and work the property started without awaiting it (a rejected
 * promise or an error thrown in a timer, which no `await` sees). {@link guardedProperty} turns
 * the first into a failing run with a path that replays it, and, given a {@link StrayErrors}
 * collector, the second into a failure of the run during which it escaped.
 *
 * Runtime-agnostic: the collector comes from the host (the Deno CLI listens for
 * `unhandledrejection` and `error`).
 *
 * @module
 */

import fc from "fast-check";

/** Errors that escaped every `await` (unhandled rejections, errors thrown in timers). */
export interface StrayErrors {
  /**
   * Takes the errors collected since the last call.
   *
   * @returns them, oldest first (empty when none escaped)
   */
  take(): unknown[];
}

/** Most escaped errors an {@link EscapedError} names in its message. */
const NAMED_MAX = 3;

/** Thrown for a run during which errors escaped the property (its `errors` holds them all). */
export class EscapedError extends Error {
  /**
   * @param errors what escaped, oldest first
   */
  constructor(readonly errors: readonly unknown[]) {
    const named = errors.slice(0, NAMED_MAX).map(describeError).join("; ");
    super(
      `${errors.length} error(s) escaped the property (not awaited: an unhandled rejection or an ` +
        `error thrown in a timer): ${named}${errors.length > NAMED_MAX ? "; ..." : ""}`,
    );
    this.name = "EscapedError";
  }
}

/** An error as one line: its name and message (or the value as a string). */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Lets every pending callback and rejection report run: two turns of the event loop. */
export async function settle(): Promise<void> {
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** The input fast-check gets when generating the real one threw: the run then fails with it. */
class GenerationFailure {
  constructor(readonly error: unknown) {}

  [fc.toStringMethod](): string {
    return `<generating the input threw ${describeError(this.error)}>`;
  }
}

type Outcome = fc.PreconditionFailure | fc.PropertyFailure | null;

/**
 * Wraps a property so that a throw while generating an input fails that run (its counterexample
 * says what was thrown, its path replays it) and, with `strays`, so that an error escaping
 * during a run fails that run (each run then waits two event-loop turns for escaped errors to
 * be reported: slower, so runners use it only to find the run a stray came from).
 *
 * @param inner the property as its suite built it
 * @param strays where escaped errors are collected, or undefined
 * @returns the guarded property (asynchronous when `strays` is given)
 */
export function guardedProperty<Ts>(
  inner: fc.IRawProperty<Ts>,
  strays?: StrayErrors,
): fc.IRawProperty<Ts> {
  const generationFailure = (v: unknown): fc.PropertyFailure | undefined =>
    v instanceof GenerationFailure ? { error: v.error } : undefined;
  const generate = (mrng: fc.Random, runId?: number): fc.Value<Ts> => {
    try {
      return inner.generate(mrng, runId);
    } catch (error) {
      return new fc.Value(new GenerationFailure(error) as Ts, undefined);
    }
  };
  const shrink = (value: fc.Value<Ts>): fc.Stream<fc.Value<Ts>> =>
    value.value_ instanceof GenerationFailure ? fc.Stream.nil() : inner.shrink(value);
  if (strays === undefined) {
    return {
      isAsync: () => inner.isAsync(),
      generate,
      shrink,
      run: (v: Ts) => generationFailure(v) ?? inner.run(v),
      runBeforeEach: () => inner.runBeforeEach(),
      runAfterEach: () => inner.runAfterEach(),
    } as fc.IRawProperty<Ts>;
  }
  const run = async (v: Ts): Promise<Outcome> => {
    const outcome = generationFailure(v) ?? await inner.run(v);
    await settle();
    const escaped = strays.take();
    if (outcome !== null || escaped.length === 0) return outcome;
    return { error: new EscapedError(escaped) };
  };
  return {
    isAsync: () => true,
    generate,
    shrink,
    run,
    runBeforeEach: async () => await inner.runBeforeEach(),
    runAfterEach: async () => await inner.runAfterEach(),
  } as fc.IRawProperty<Ts, true>;
}
