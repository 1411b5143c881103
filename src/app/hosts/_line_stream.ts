/**
 * Line streams over a session's control channel (`protocol.ts`: `part` messages, credit by
 * `more`): a sender that waits for credit before each part beyond the window, and a receiver
 * that hands lines over as they are consumed and grants more credit as it goes. Whoever reads
 * the control channel passes `part` messages to the receiver and `more` to the sender, and
 * fails both when the channel fails, so no wait outlives the session.
 *
 * @module
 */

import {
  LineSplitter,
  PartCutter,
  type PartMessage,
  SessionProtocolError,
  STREAM_WINDOW_PARTS,
} from "../../core/backup/protocol.ts";
import type { Session } from "./session.ts";

/** Longest wait for the peer's credit: it consumes a window in far less. */
const CREDIT_WAIT_MS = 300_000;

/** Sends lines as `part` messages, within the credit the receiver grants. */
export class LineStreamSender {
  readonly #cutter: PartCutter;
  #upTo = STREAM_WINDOW_PARTS - 1;
  #wake: (() => void) | undefined;
  #failure: Error | undefined;

  /**
   * @param session the session
   * @param of which stream
   */
  constructor(readonly session: Session, readonly of: "parent" | "manifest") {
    this.#cutter = new PartCutter(of);
  }

  /** The receiver's credit: parts up to `upTo` may be sent. */
  grant(upTo: number): void {
    if (upTo <= this.#upTo) return;
    this.#upTo = upTo;
    this.#wake?.();
  }

  /** Stops the sender: a pending and every later send fail with `error`. */
  fail(error: Error): void {
    this.#failure ??= error;
    this.#wake?.();
  }

  /**
   * Sends one line, or several joined by newlines (no newline at the end): the parts it fills.
   *
   * @param text the line or lines
   */
  async line(text: string): Promise<void> {
    for (const part of this.#cutter.add(text)) await this.#send(part);
  }

  /** Sends the rest and marks the end. */
  async end(): Promise<void> {
    await this.#send(this.#cutter.end());
  }

  async #send(part: PartMessage): Promise<void> {
    const deadlineMs = performance.now() + CREDIT_WAIT_MS;
    // Bounded: each turn follows a grant or a failure, and the deadline ends it.
    while (part.index > this.#upTo && this.#failure === undefined) {
      const left = deadlineMs - performance.now();
      if (left <= 0) {
        throw new SessionProtocolError(
          `the peer granted no ${this.of} credit in ${CREDIT_WAIT_MS} ms`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wake = undefined;
    }
    if (this.#failure !== undefined) throw this.#failure;
    await this.session.sendMessage("control", part);
  }
}

/** Receives a line stream: parts are pushed in, lines are taken out in order. */
export class LineStreamReceiver {
  readonly #splitter: LineSplitter;
  #granted = STREAM_WINDOW_PARTS - 1;
  readonly #queue: Array<{ readonly index: number; readonly lines: string[] }> = [];
  #wake: (() => void) | undefined;
  #failure: Error | undefined;

  /**
   * @param session the session (credit goes back on its control channel)
   * @param of which stream
   * @param lineCharsMax the longest line accepted
   */
  constructor(
    readonly session: Session,
    readonly of: "parent" | "manifest",
    lineCharsMax: number,
  ) {
    this.#splitter = new LineSplitter(of, lineCharsMax);
  }

  /** True once the last part arrived. */
  get complete(): boolean {
    return this.#splitter.done;
  }

  /**
   * Takes the next part (from whoever reads the control channel).
   *
   * @throws SessionProtocolError for a part out of order or beyond the credit
   */
  push(part: PartMessage): void {
    const lines = this.#splitter.add(part, this.#granted);
    this.#queue.push({ index: part.index, lines });
    this.#wake?.();
  }

  /** Stops the receiver: the consumer's next wait fails with `error`. */
  fail(error: Error): void {
    this.#failure ??= error;
    this.#wake?.();
  }

  /** The lines, in order, as they arrive; grants credit as they are consumed. */
  async *lines(): AsyncGenerator<string> {
    // Bounded by the stream: each turn consumes one part, and the last part ends it.
    for (;;) {
      const next = this.#queue.shift();
      if (next === undefined) {
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#splitter.done) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
        continue;
      }
      for (const line of next.lines) yield line;
      const consumed = next.index + 1;
      if (!this.#splitter.done && consumed % (STREAM_WINDOW_PARTS / 2) === 0) {
        this.#granted = consumed + STREAM_WINDOW_PARTS - 1;
        await this.session.sendMessage("control", {
          type: "more",
          of: this.of,
          upTo: this.#granted,
        });
      }
    }
  }
}
