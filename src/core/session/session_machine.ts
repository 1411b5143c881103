/**
 * What every session machine shares: the state, the failure's reason, the clock of the time rows
 * (`session_clock.ts`), and the step that takes an event: time moves on, nothing is taken after
 * an end, the row of (state, event) is found (none: the machine's failure rule), the machine acts,
 * and the row's next state holds unless the act moved it (any assignment to `current` in the act
 * counts as a move, even one that ends in the state it started from).
 *
 * @module
 */

import { SessionClock, type SessionTimes } from "./session_clock.ts";
import type { SessionRow } from "./table_markdown.ts";

/** A session machine over its states `S`, events `E` and actions `A`. */
export abstract class SessionMachine<
  S extends string,
  E extends { readonly type: string; readonly atMs: number },
  A extends { readonly type: string },
> {
  #state: S;
  /** Whether the act being run assigned a state (then the row's next state does not apply). */
  #moved = false;
  /** Why it is failing or failed ("" while it is not). */
  protected failure = "";
  protected readonly clock: SessionClock;

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   * @param initial the first state
   * @param rows the machine's table
   */
  constructor(
    readonly times: SessionTimes,
    startMs: number,
    initial: S,
    readonly rows: readonly SessionRow<S, E["type"]>[],
  ) {
    this.clock = new SessionClock(times, startMs);
    this.#state = initial;
  }

  /** The state it is in. */
  protected get current(): S {
    return this.#state;
  }

  /** Moves the machine (in an act: the row's next state then does not apply). */
  protected set current(state: S) {
    this.#state = state;
    this.#moved = true;
  }

  /** The state it is in. */
  get state(): S {
    return this.current;
  }

  /** Why it is failing or failed ("" while it is not). */
  get failureReason(): string {
    return this.failure;
  }

  /** Whether it has ended (done or failed): it takes nothing more. */
  get ended(): boolean {
    return this.current === "done" || this.current === "failed";
  }

  /**
   * Takes one event.
   *
   * @param event what happened, with the pump's clock
   * @returns what to do, in order
   */
  handle(event: E): A[] {
    this.clock.advance(event.atMs);
    if (this.ended) return [];
    const early = this.beforeRows(event);
    if (early !== undefined) return early;
    const row = this.rows.find((r) => r.state === this.current && r.on === event.type);
    if (row === undefined) return this.noRow(event);
    // A message or any other frame from the peer (the rows that take them) says it is alive.
    if (this.fromPeer(event)) this.clock.heard();
    this.#moved = false;
    const actions = this.act(event);
    if (!this.#moved && !this.ended) this.#state = row.next;
    if (actions.some((a) => a.type === "send-keepalive")) this.clock.keepaliveSent();
    return actions;
  }

  /**
   * The time rows of a `tick`: the failure rule when the peer was silent too long (watched only
   * while `watchSilence`), `keepalive` when this side was idle too long, else nothing.
   *
   * @param peer who the peer is, for the failure reason ("server", "client", "agent")
   * @param keepalive the machine's keepalive action
   * @param watchSilence whether the peer's silence counts in this state
   */
  protected timeRows(peer: string, keepalive: A, watchSilence = true): A[] {
    const found = this.clock.tick(watchSilence);
    if (found.type === "silent") {
      return this.fail(`the ${peer} was silent for ${found.silentMs} ms`);
    }
    return found.type === "keepalive" ? [keepalive] : [];
  }

  /** Whether the event is something the peer sent (it says the peer is alive). */
  protected fromPeer(event: E): boolean {
    return event.type === "message" || event.type === "heard";
  }

  /** Events taken in any state before the rows (failures): their actions, else undefined. */
  protected beforeRows(_event: E): A[] | undefined {
    return undefined;
  }

  /** An event no row takes: a protocol failure. */
  protected noRow(event: E): A[] {
    return this.fail(`protocol: no row for ${event.type} in ${this.current}`);
  }

  /** What the row's event does (it may move the state). */
  protected abstract act(event: E): A[];

  /** The failure rule. */
  protected abstract fail(reason: string): A[];
}
