/**
 * The descriptor table of one socket implementation: descriptor values (from a
 * {@link DescriptorSpace}), each socket's state, what calls are pending on it, and the
 * implementation's own handle. Pure bookkeeping: adapters ask it whether a call is legal,
 * perform the I/O, and report the outcome back.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { type DescriptorRange, DescriptorSpace, type SocketKind } from "./descriptor.ts";
import { fail, ok, type Result, type SocketErrorCode } from "./errors.ts";
import {
  checkCall,
  endsConnection,
  localAddressOf,
  type SocketState,
  type StateCall,
} from "./socket_state.ts";
import type { Address } from "./sockets.ts";

/** Calls that wait, one of each kind at a time per descriptor. */
export type WaitingCall = "accept" | "connect" | "send" | "recv";

/** One open socket. `H` is the implementation's handle (a TCP connection, a control block). */
export interface SocketEntry<H> {
  /** The descriptor. */
  readonly fd: number;
  /** Its state. */
  state: SocketState;
  /** The implementation's handle, once it has one. */
  handle: H | undefined;
  /** The waiting calls in flight on it. */
  readonly pending: Set<WaitingCall>;
}

/** What a call ended with, reported by the adapter. */
export type CallOutcome =
  | { readonly type: "bound"; readonly local: Address }
  | { readonly type: "listening"; readonly backlog: number }
  | { readonly type: "connected"; readonly local: Address; readonly remote: Address }
  | { readonly type: "done" }
  | { readonly type: "eof" }
  | { readonly type: "error"; readonly code: SocketErrorCode; readonly message: string };

/** Largest listen backlog any implementation accepts. */
export const BACKLOG_MAX = 1024;

/**
 * The descriptor table of one kind.
 *
 * @example Illegal order is a typed error
 * ```ts
 * import { SocketTable } from "./socket_table.ts";
 * const table = new SocketTable<string>("network");
 * const opened = table.open();
 * if (!opened.ok) throw new Error(opened.message);
 * const verdict = table.begin(opened.value, "send");
 * console.assert(!verdict.ok && verdict.code === "ENOTCONN");
 * ```
 */
export class SocketTable<H> {
  /** The kind of every descriptor in this table. */
  readonly kind: SocketKind;
  readonly #space: DescriptorSpace;
  readonly #entries = new Map<number, SocketEntry<H>>();

  /**
   * Makes an empty table.
   *
   * @param kind the kind of every descriptor in this table
   * @param options `liveMax` (how many sockets may be open at once) and a test-only `range`
   */
  constructor(kind: SocketKind, options: { liveMax?: number; range?: DescriptorRange } = {}) {
    this.kind = kind;
    this.#space = new DescriptorSpace(kind, options);
  }

  /** How many sockets are open. */
  get openCount(): number {
    return this.#entries.size;
  }

  /** The open descriptors. */
  descriptors(): number[] {
    return [...this.#entries.keys()];
  }

  /** Opens a socket in phase `created`. */
  open(handle?: H): Result<number> {
    const fd = this.#space.allocate();
    if (!fd.ok) return fd;
    invariant(!this.#entries.has(fd.value), `descriptor ${fd.value} handed out twice`);
    this.#entries.set(fd.value, {
      fd: fd.value,
      state: { phase: "created" },
      handle,
      pending: new Set(),
    });
    return fd;
  }

  /** Opens a socket already connected (the result of `accept`). */
  openConnected(local: Address, remote: Address, handle: H): Result<number> {
    const fd = this.open(handle);
    if (!fd.ok) return fd;
    this.#entry(fd.value).state = { phase: "connected", local, remote, peerClosed: false };
    return fd;
  }

  /** The entry of an open descriptor, or EBADF. */
  lookup(fd: number): Result<SocketEntry<H>> {
    const entry = this.#entries.get(fd);
    if (entry === undefined) {
      return fail("EBADF", `descriptor ${String(fd)} is not an open ${this.kind} socket`);
    }
    return ok(entry);
  }

  /**
   * Starts a call: checks the descriptor, the call order and that no call of the same kind is
   * pending. For waiting calls, marks the call pending until {@link complete}.
   *
   * @returns the entry to act on, or the typed failure (the state is unchanged)
   */
  begin(fd: number, call: StateCall): Result<SocketEntry<H>> {
    const entry = this.lookup(fd);
    if (!entry.ok) return entry;
    const verdict = checkCall(entry.value.state, call);
    if (!verdict.ok) return verdict;
    if (isWaiting(call)) {
      if (entry.value.pending.has(call)) {
        return fail("EALREADY", `a ${call} is already pending on descriptor ${fd}`);
      }
      entry.value.pending.add(call);
      if (call === "connect") {
        const local = localAddressOf(entry.value.state);
        entry.value.state = local === undefined
          ? { phase: "connecting" }
          : { phase: "connecting", local };
      }
    }
    return entry;
  }

  /**
   * Ends a call with its outcome and moves the state. A descriptor closed while its call was
   * pending is ignored (the close already won).
   */
  complete(fd: number, call: StateCall, outcome: CallOutcome): void {
    const entry = this.#entries.get(fd);
    if (entry === undefined) return;
    if (isWaiting(call)) entry.pending.delete(call);
    entry.state = nextState(entry.state, call, outcome);
  }

  /** Marks a connected socket broken (the peer vanished); later calls repeat `code`. */
  breakConnection(fd: number, code: SocketErrorCode, reason: string): void {
    const entry = this.#entries.get(fd);
    if (entry === undefined) return;
    entry.state = { phase: "failed", code, reason, local: localAddressOf(entry.state) };
  }

  /**
   * Closes a descriptor: forgets its state and returns its value to the space.
   *
   * @returns the entry as it was (so the adapter can release its handle), or EBADF
   */
  close(fd: number): Result<SocketEntry<H>> {
    const entry = this.lookup(fd);
    if (!entry.ok) return entry;
    this.#entries.delete(fd);
    const released = this.#space.release(fd);
    invariant(released.ok, `descriptor ${fd} was open in the table but not live in its space`);
    return entry;
  }

  #entry(fd: number): SocketEntry<H> {
    const entry = this.#entries.get(fd);
    invariant(entry !== undefined, `descriptor ${fd} must be open`);
    return entry;
  }
}

function isWaiting(call: StateCall): call is WaitingCall {
  return call === "accept" || call === "connect" || call === "send" || call === "recv";
}

/** The state after `call` ended with `outcome`. */
export function nextState(state: SocketState, call: StateCall, outcome: CallOutcome): SocketState {
  switch (outcome.type) {
    case "bound":
      invariant(call === "bind", "only bind ends bound");
      return { phase: "bound", local: outcome.local };
    case "listening":
      invariant(call === "listen" && state.phase === "bound", "listen ends listening from bound");
      return { phase: "listening", local: state.local, backlog: outcome.backlog };
    case "connected":
      invariant(call === "connect", "only connect ends connected");
      return {
        phase: "connected",
        local: outcome.local,
        remote: outcome.remote,
        peerClosed: false,
      };
    case "eof":
      invariant(call === "recv", "only recv sees end of stream");
      return state.phase === "connected" ? { ...state, peerClosed: true } : state;
    case "done":
      return state;
    case "error": {
      if (endsConnection(call, outcome.code)) {
        return {
          phase: "failed",
          code: outcome.code,
          reason: outcome.message,
          local: localAddressOf(state),
        };
      }
      if (call === "connect" && state.phase === "connecting") {
        // A connect that failed without ending anything (bad address kind, say) goes back.
        return state.local === undefined
          ? { phase: "created" }
          : { phase: "bound", local: state.local };
      }
      return state;
    }
  }
}
