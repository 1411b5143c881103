/**
 * What every session machine shares: a table of rows, each a state, the input it takes there and
 * the state it goes to; end states that take nothing more; and one failure row for every live
 * state (a `failure` input, or an input no row takes, or a throw while acting: the machine goes
 * to its failing state once and asks for what its failure rule says).
 *
 * @module
 */

import { SessionProtocolError } from "../backup/protocol.ts";

/** One row of a session machine's table. */
export interface TableRow<S extends string, T extends string> {
  readonly state: S;
  readonly on: T;
  readonly next: S;
  /** The rule of the row, in words. */
  readonly rule: string;
}

/** A session machine driven by its table. */
export abstract class TableMachine<
  S extends string,
  I extends { readonly type: string },
  A,
> {
  #state: S;

  /**
   * @param who the machine, for messages
   * @param initial its first state
   * @param rows its table
   * @param ends states that take nothing more
   * @param failing the state a failure goes to
   */
  constructor(
    readonly who: string,
    initial: S,
    readonly rows: readonly TableRow<S, I["type"]>[],
    readonly ends: readonly S[],
    readonly failing: S,
  ) {
    this.#state = initial;
  }

  /** The state it is in. */
  get state(): S {
    return this.#state;
  }

  /** Moves to `state` (a row whose action decides the next state itself). */
  protected goTo(state: S): void {
    this.#state = state;
  }

  /**
   * Takes one input.
   *
   * @param input what happened
   * @returns what to do, in order
   */
  handle(input: I): A[] {
    if (this.ends.includes(this.#state)) return [];
    if (input.type === "failure") return this.#fail((input as { error?: unknown }).error);
    const row = this.rows.find((r) => r.state === this.#state && r.on === input.type);
    if (row === undefined) {
      if (this.#state === this.failing) return []; // late results while failing change nothing
      return this.#fail(
        new SessionProtocolError(`${this.who}: no row for ${input.type} in ${this.#state}`),
      );
    }
    try {
      const before = this.#state;
      const actions = this.act(input);
      if (this.#state === before) this.#state = row.next;
      return actions;
    } catch (error) {
      return this.#fail(error);
    }
  }

  /** What the row taking `input` asks for (it may `goTo` a state of its own choosing). */
  protected abstract act(input: I): A[];

  /** What the failure rule asks for, once, on the first failure. */
  protected abstract failed(error: unknown): A[];

  #fail(error: unknown): A[] {
    if (this.#state === this.failing) return [];
    this.#state = this.failing;
    return this.failed(error);
  }
}
