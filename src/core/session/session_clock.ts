/**
 * The time rows both session machines share: a keepalive `keepaliveMs` after the last one, and
 * a peer silent for `peerSilentMs` (nothing heard from it: a message or any frame). Time is an
 * input: the machine passes each event's `atMs`.
 *
 * @module
 */

import { invariant } from "../assert.ts";

/** An event without its time (a pump stamps it with its clock when it feeds it). */
export type Unstamped<E> = E extends unknown ? Omit<E, "atMs"> : never;

/** A session machine's time rules. */
export interface SessionTimes {
  /** Send a keepalive (on every channel) this long after the last one, ms. */
  readonly keepaliveMs: number;
  /** Fail when nothing was heard from the peer for this long, ms. */
  readonly peerSilentMs: number;
}

/** What a tick finds. */
export type TickFinding =
  | { readonly type: "silent"; readonly silentMs: number }
  | { readonly type: "keepalive" }
  | { readonly type: "nothing" };

/** A session's clock: now, the last keepalive sent, the last thing heard. */
export class SessionClock {
  #nowMs: number;
  #lastKeepaliveMs: number;
  #lastHeardMs: number;

  /**
   * @param times the rules (`peerSilentMs > keepaliveMs > 0`)
   * @param startMs the clock when the session was established
   */
  constructor(readonly times: SessionTimes, startMs: number) {
    invariant(times.keepaliveMs > 0, `keepaliveMs must be positive, not ${times.keepaliveMs}`);
    invariant(
      times.peerSilentMs > times.keepaliveMs,
      `peerSilentMs (${times.peerSilentMs}) must exceed keepaliveMs (${times.keepaliveMs})`,
    );
    this.#nowMs = this.#lastKeepaliveMs = this.#lastHeardMs = startMs;
  }

  /** Moves to an event's time; time never goes back. */
  advance(atMs: number): void {
    invariant(atMs >= this.#nowMs, `time went back: ${atMs} < ${this.#nowMs}`);
    this.#nowMs = atMs;
  }

  /** The peer was heard from now. */
  heard(): void {
    this.#lastHeardMs = this.#nowMs;
  }

  /** A keepalive went out now. */
  keepaliveSent(): void {
    this.#lastKeepaliveMs = this.#nowMs;
  }

  /**
   * The tick rule, now.
   *
   * @param silenceFails whether a silent peer fails the session in this state
   * @returns silent (past `peerSilentMs`), else a keepalive due, else nothing
   */
  tick(silenceFails: boolean): TickFinding {
    const silentMs = this.#nowMs - this.#lastHeardMs;
    if (silenceFails && silentMs >= this.times.peerSilentMs) {
      return { type: "silent", silentMs: Math.round(silentMs) };
    }
    if (this.#nowMs - this.#lastKeepaliveMs >= this.times.keepaliveMs) return { type: "keepalive" };
    return { type: "nothing" };
  }
}
