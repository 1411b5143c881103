/**
 * Invariant checks for the cores. A failed invariant is a bug in lanfree, never bad input:
 * bad input gets a typed error value instead.
 *
 * @module
 */

/** Thrown when a core invariant does not hold: a bug, not a user error. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = "InvariantError";
  }
}

/**
 * Asserts an invariant.
 *
 * @param condition what must hold
 * @param message what it means, in words
 *
 * @example
 * ```ts
 * import { invariant } from "./assert.ts";
 * invariant(1 + 1 === 2, "arithmetic works");
 * ```
 */
export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

/**
 * `true` when `A` and `B` describe the same values (each is assignable to the other), else
 * `false`. Pins a hand-written public type to the zod schema that validates it, so the two
 * cannot drift apart unnoticed: `const same: SameType<Message, z.output<typeof MessageSchema>>
 * = true;` stops compiling when either changes alone.
 */
export type SameType<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
