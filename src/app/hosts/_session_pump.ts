/**
 * The loop that runs a session machine (`src/core/session/`): it takes events one at a time from
 * a bounded queue, stamps each with the clock (`performance.now()`, the simulated world's virtual
 * clock under `deno task simulate`), feeds it to the machine and carries the actions out through
 * the runner's `act`. The sources of events are the control channel's reader, a timer of its own
 * (a `tick` every `keepaliveMs / 2`, with `heard` before it when any frame arrived since the last
 * one) and the runner's own steps; each source has at most one event waiting (a post resolves
 * when the loop took it), so the queue stays short. It decides nothing about the protocol.
 *
 * @module
 */

import { invariant } from "../../core/assert.ts";
import { parseSessionMessage, SessionProtocolError } from "../../core/backup/protocol.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import { PeerFailedError } from "./peer_reports.ts";
import type { Session } from "./session.ts";
import type { Unstamped } from "../../core/session/session_clock.ts";

export type { Unstamped };

/** What the pump needs of a machine. */
export interface PumpedMachine<E, A> {
  readonly ended: boolean;
  /** Why it is failing or failed ("" while it is not). */
  readonly failureReason: string;
  handle(event: E): A[];
}

/** The machine's time rules, from the session's keepalive period. */
export interface PumpTimes {
  readonly keepaliveMs: number;
  readonly peerSilentMs: number;
}

/** Events posted and not yet taken: one per source at most (each waits for its turn). */
const POSTED_MAX = 16;
/** The most events one session takes (a bound, far above any real session's). */
const EVENTS_MAX = 100_000_000;
/**
 * The peer-silent row's wait, in keepalive periods: twice the sockets' I/O timeout (which is 4
 * periods, `openSession`), so a descriptor's own receive times out first and the row is the
 * backstop for a peer that stays connected and sends nothing at all.
 */
const PEER_SILENT_KEEPALIVES = 8;

/** Runs one session machine over a session. */
export class SessionPump<
  E extends { readonly type: string; readonly atMs: number },
  A extends { readonly type: string },
> {
  readonly #posted: Array<{ event: Unstamped<E>; taken: () => void }> = [];
  readonly #errors = new WeakMap<object, Error>();
  readonly #followUps: Unstamped<E>[] = [];
  readonly #keepaliveMs: number;
  #machine: PumpedMachine<E, A> | undefined;
  #wake: (() => void) | undefined;
  #heardFrames = 0;
  #tickPending = false;
  /** The first failure the machine took, as the error the runner throws. */
  #failure: Error | undefined;

  /** @param session the session (the pump takes over its keepalives) */
  constructor(readonly session: Session) {
    this.#keepaliveMs = session.ownKeepalives();
  }

  /** The times of the machine's tick rows (with no keepalives, the rows never fire). */
  get times(): PumpTimes {
    const keepaliveMs = this.#keepaliveMs > 0 ? this.#keepaliveMs : 2_000;
    return { keepaliveMs, peerSilentMs: PEER_SILENT_KEEPALIVES * keepaliveMs };
  }

  /** Why the session failed: the error of the first failure the machine took. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /**
   * The error a runner ends with when its machine failed: the peer's own account when the peer
   * sent one (the cause), else the first failure the machine took.
   *
   * @param peer who the peer is
   * @param peerReason the peer's `failed` message, if it came
   * @returns the error to throw
   */
  failedWith(peer: "client" | "server", peerReason: string | undefined): Error {
    if (peerReason !== undefined) return new PeerFailedError(peer, peerReason);
    invariant(this.#failure !== undefined, "a failed machine has its failure");
    return this.#failure;
  }

  /**
   * Feeds the machine until it ends.
   *
   * @param machine the machine (built with {@link times})
   * @param act carries one action out (it must not await a post of its own: see {@link post})
   */
  async run(
    machine: PumpedMachine<E, A>,
    act: (action: A, event: Unstamped<E>) => Promise<void>,
  ): Promise<void> {
    this.#machine = machine;
    const timer = this.#keepaliveMs > 0
      ? setInterval(() => this.#tick(), this.#keepaliveMs / 2)
      : undefined;
    try {
      for (let taken = 0; !machine.ended; taken++) {
        invariant(taken < EVENTS_MAX, `more than ${EVENTS_MAX} session events`);
        const { event, taken: done } = await this.#next();
        if (event.type === "tick" && this.session.framesReceived !== this.#heardFrames) {
          this.#heardFrames = this.session.framesReceived;
          await this.#feed({ type: "heard" } as Unstamped<E>, act);
        }
        await this.#feed(event, act);
        // Follow-ups are fed before the source hears its event was taken: a reader that
        // stops once the machine ended reads nothing that belongs to the channel's next user.
        for (let i = 0; i < POSTED_MAX && this.#followUps.length > 0 && !machine.ended; i++) {
          await this.#feed(this.#followUps.shift()!, act);
        }
        this.#followUps.length = 0;
        done();
      }
    } finally {
      clearInterval(timer);
      this.session.resumeKeepalives();
    }
  }

  async #feed(
    event: Unstamped<E>,
    act: (action: A, event: Unstamped<E>) => Promise<void>,
  ): Promise<void> {
    const machine = this.#machine!;
    if (event.type === "tick") this.#tickPending = false;
    const actions = machine.handle({ ...event, atMs: performance.now() } as E);
    if (this.#failure === undefined && machine.failureReason !== "") {
      const reason = machine.failureReason;
      this.#failure = this.#errors.get(event) ??
        (event.type === "tick"
          ? new SocketError("ETIMEDOUT", reason)
          : new SessionProtocolError(reason));
    }
    for (const action of actions) await act(action, event);
  }

  /**
   * Feeds an event that follows from the action being carried out (a request the last part
   * completed, say) right after the current one, before its source is told it was taken.
   */
  followUp(event: Unstamped<E>): void {
    invariant(this.#followUps.length < POSTED_MAX, `more than ${POSTED_MAX} follow-ups`);
    this.#followUps.push(event);
  }

  /**
   * Posts an event; resolves once the loop took it. Never await it from an action: the loop
   * that takes it is the one running the action.
   */
  post(event: Unstamped<E>): Promise<void> {
    if (this.#machine?.ended) return Promise.resolve();
    invariant(this.#posted.length < POSTED_MAX, `more than ${POSTED_MAX} session events posted`);
    return new Promise((taken) => {
      this.#posted.push({ event, taken });
      this.#wake?.();
    });
  }

  /**
   * Posts a failure (`{ type, reason }`, with `fields`) whose error is what the runner throws if
   * it is the one that fails the session. It returns nothing to await (a source fails once): an action may
   * call it without the deadlock of awaiting its own loop.
   */
  postFailure(error: unknown, type = "failure", fields: Record<string, unknown> = {}): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    const event = { ...fields, type, reason: failure.message } as unknown as Unstamped<E>;
    this.#errors.set(event, failure);
    this.post(event);
  }

  /** Runs a step of the runner's in the background; its end is posted as an event. */
  background<T>(work: Promise<T>, then: (value: T) => Unstamped<E>): void {
    work.then((value) => this.post(then(value)), (error) => this.postFailure(error));
  }

  /**
   * Reads the control channel, one message per turn of the loop, until the machine ends or
   * `stopped()`; a broken channel or a malformed message is a failure.
   *
   * @param seen called with each message before it is posted
   */
  readControl(stopped: () => boolean, seen: (message: unknown) => void = () => {}): void {
    (async () => {
      try {
        for (let count = 0; count < EVENTS_MAX && !this.#machine?.ended && !stopped(); count++) {
          const message = parseSessionMessage(await this.session.nextMessage("control"));
          seen(message);
          await this.post({ type: "message", message } as unknown as Unstamped<E>);
        }
      } catch (error) {
        this.postFailure(error);
      }
    })();
  }

  async #next(): Promise<{ event: Unstamped<E>; taken: () => void }> {
    // Bounded: each wake-up follows a post.
    for (let waits = 0; this.#posted.length === 0; waits++) {
      invariant(waits <= EVENTS_MAX, "the pump waited without events");
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
    return this.#posted.shift()!;
  }

  #tick(): void {
    if (this.#tickPending || this.#machine?.ended) return;
    this.#tickPending = true;
    this.post({ type: "tick" } as Unstamped<E>);
  }
}
