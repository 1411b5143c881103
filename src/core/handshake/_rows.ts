/**
 * Helpers that keep the flow tables to one line per row.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import type { SocketErrorCode } from "../dispatch/errors.ts";
import type { NetworkAddress, StorageAddress } from "../dispatch/sockets.ts";
import type { Message } from "../wire/messages.ts";
import type { Effect, FdName, HandshakeInput, Row, RowContext, RowEvent, Step } from "./types.ts";

/** Builds one table row. */
export function row(
  step: Step,
  lane: string,
  state: string,
  on: RowEvent,
  next: string,
  act: (context: RowContext, input: HandshakeInput) => readonly Effect[],
): Row {
  return { step, lane, state, on, next, act };
}

/** The local network address to bind, on `port`. */
export function local(context: RowContext, port: number): NetworkAddress {
  return { kind: "network", host: context.config.localHost, port };
}

/** The peer's network address on `port`. */
export function peer(context: RowContext, port: number): NetworkAddress {
  return { kind: "network", host: context.config.peerHost, port };
}

/** A storage address in the STG learned or configured so far. */
export function storage(context: RowContext, port: number): StorageAddress {
  const stg = context.learned.stg;
  invariant(stg !== undefined, "the STG is known before a storage address is built");
  return { kind: "storage", stg, port };
}

/** The message carried by a `received` input. */
export function received(input: HandshakeInput): Message {
  invariant(input.type === "received", `a received message, not ${input.type}`);
  return input.message;
}

/** Effect shorthands. */
export const socket = (kind: "network" | "storage", as: FdName): Effect => ({
  call: "socket",
  kind,
  as,
});
export const send = (fd: FdName, message: Message): Effect => ({ call: "send", fd, message });
export const recv = (fd: FdName): Effect => ({ call: "recv", fd });
export const listen = (fd: FdName): Effect => ({ call: "listen", fd });
export const accept = (fd: FdName, as: FdName): Effect => ({ call: "accept", fd, as });
export const close = (fd: FdName, step?: Step): Effect =>
  step === undefined ? { call: "close", fd } : { call: "close", fd, step };
export const done: Effect = { call: "done" };
export const reject = (
  message: string,
  options: { readonly code?: SocketErrorCode; readonly step?: Step } = {},
): Effect => ({ call: "reject", message, ...options });
