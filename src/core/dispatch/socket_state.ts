/**
 * The per-descriptor socket state machine, as one table of data.
 *
 * Phases:
 * - `created`: opened by `socket`, no address;
 * - `bound`: `bind` gave it a local address;
 * - `listening`: `listen` made it accept connections;
 * - `connecting`: a `connect` is in flight;
 * - `connected`: a stream (from `connect` or `accept`); `peerClosed` once `recv` saw the end;
 * - `failed`: the connection broke (reset, timeout, refused); only `close` (and `getsockname`
 *   when an address is known) remain legal, other calls repeat the failure's code.
 *
 * A closed descriptor has no state: the table forgets it and every call on it is EBADF.
 *
 * @module
 */

import type { SocketCall, SocketErrorCode } from "./errors.ts";
import { fail, ok, type Result } from "./errors.ts";
import type { Address } from "./sockets.ts";

/** The state of one open socket. */
export type SocketState =
  | { readonly phase: "created" }
  | { readonly phase: "bound"; readonly local: Address }
  | { readonly phase: "listening"; readonly local: Address; readonly backlog: number }
  | { readonly phase: "connecting"; readonly local?: Address }
  | {
    readonly phase: "connected";
    readonly local: Address;
    readonly remote: Address;
    readonly peerClosed: boolean;
  }
  | {
    readonly phase: "failed";
    readonly code: SocketErrorCode;
    readonly reason: string;
    readonly local?: Address;
  };

/** The name of a phase. */
export type SocketPhase = SocketState["phase"];

/** The calls the table rules on (`socket` creates a state, so it has no row). */
export type StateCall = Exclude<SocketCall, "socket">;

/** A table cell: legal, or the error code and why. */
export type Verdict = "ok" | readonly [SocketErrorCode, string];

/**
 * Phase × call → verdict. Read a row as "in this phase, this call is ...". `failed` rows are
 * filled in by {@link checkCall} with the failure's own code.
 */
export const TRANSITIONS: Readonly<
  Record<Exclude<SocketPhase, "failed">, Readonly<Record<StateCall, Verdict>>>
> = {
  created: {
    bind: "ok",
    listen: ["EINVAL", "listen before bind"],
    getsockname: ["EINVAL", "socket is not bound"],
    accept: ["EINVAL", "accept on a socket that is not listening"],
    connect: "ok",
    send: ["ENOTCONN", "socket is not connected"],
    recv: ["ENOTCONN", "socket is not connected"],
    close: "ok",
  },
  bound: {
    bind: ["EINVAL", "socket is already bound"],
    listen: "ok",
    getsockname: "ok",
    accept: ["EINVAL", "accept on a socket that is not listening"],
    connect: "ok",
    send: ["ENOTCONN", "socket is not connected"],
    recv: ["ENOTCONN", "socket is not connected"],
    close: "ok",
  },
  listening: {
    bind: ["EINVAL", "socket is already bound"],
    listen: ["EINVAL", "socket is already listening"],
    getsockname: "ok",
    accept: "ok",
    connect: ["EINVAL", "connect on a listening socket"],
    send: ["ENOTCONN", "a listening socket does not send"],
    recv: ["ENOTCONN", "a listening socket does not receive"],
    close: "ok",
  },
  connecting: {
    bind: ["EINVAL", "socket is connecting"],
    listen: ["EINVAL", "socket is connecting"],
    getsockname: ["EINVAL", "socket is connecting"],
    accept: ["EINVAL", "accept on a socket that is not listening"],
    connect: ["EALREADY", "a connect is already in progress"],
    send: ["ENOTCONN", "socket is still connecting"],
    recv: ["ENOTCONN", "socket is still connecting"],
    close: "ok",
  },
  connected: {
    bind: ["EINVAL", "socket is already connected"],
    listen: ["EINVAL", "socket is connected"],
    getsockname: "ok",
    accept: ["EINVAL", "accept on a connected socket"],
    connect: ["EISCONN", "socket is already connected"],
    send: "ok",
    recv: "ok",
    close: "ok",
  },
};

/**
 * Rules on a call in a state.
 *
 * @param state the socket's state
 * @param call the call being made
 * @returns ok when legal, else the typed failure
 *
 * @example
 * ```ts
 * import { checkCall } from "./socket_state.ts";
 * const verdict = checkCall({ phase: "created" }, "listen");
 * console.assert(!verdict.ok && verdict.code === "EINVAL");
 * ```
 */
export function checkCall(state: SocketState, call: StateCall): Result<void> {
  if (state.phase === "failed") {
    if (call === "close") return ok(undefined);
    if (call === "getsockname" && state.local !== undefined) return ok(undefined);
    return fail(state.code, `connection failed earlier: ${state.reason}`);
  }
  const verdict = TRANSITIONS[state.phase][call];
  return verdict === "ok" ? ok(undefined) : fail(verdict[0], verdict[1]);
}

/** Codes that end a connection when a call fails with them. Others leave the state as it was. */
const CONNECTION_ENDING_CODES: ReadonlySet<SocketErrorCode> = new Set<SocketErrorCode>([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "EPROTO",
]);

/** True when a failure with `code` on `call` moves the socket to `failed`. */
export function endsConnection(call: StateCall, code: SocketErrorCode): boolean {
  if (call === "accept" || call === "bind" || call === "listen") return false;
  return CONNECTION_ENDING_CODES.has(code);
}

/** The local address of a state, when it has one. */
export function localAddressOf(state: SocketState): Address | undefined {
  return state.phase === "created" ? undefined : state.local;
}
