/**
 * The error family of the unified socket API.
 *
 * Every failure a caller can meet on a socket call is a {@link SocketError} with a POSIX-style
 * {@link SocketErrorCode}. Cores return these as values (see {@link Result}); the `Sockets`
 * implementations throw them, so `err instanceof SocketError && err.code === "ECONNREFUSED"` is
 * the one way to tell failures apart. Nothing in lanfree throws strings.
 *
 * @module
 */

/** POSIX-style error codes used by every socket implementation. */
export const SOCKET_ERROR_CODES = [
  "EBADF", // the descriptor is not open (never allocated, already closed, or out of range)
  "EINVAL", // the call is illegal in the socket's current state, or an argument is malformed
  "EAFNOSUPPORT", // the address kind does not match the socket kind
  "EADDRINUSE", // the address is already bound by another socket
  "EADDRNOTAVAIL", // no port is free in the dynamic range
  "ECONNREFUSED", // nobody listens at the address, or the listener's backlog is full
  "ENOTCONN", // send/recv on a socket that is not connected
  "EISCONN", // connect on a socket that is already connected
  "EALREADY", // another call of the same direction is already pending on this descriptor
  "ECONNRESET", // the peer reset the connection or disappeared
  "EPIPE", // send after the peer (or we) shut the connection down
  "ETIMEDOUT", // a bounded wait ran out
  "ENOBUFS", // a resource table is exhausted (descriptors, control blocks, ring space)
  "EMSGSIZE", // a frame is larger than the configured maximum
  "EPROTO", // the peer sent bytes that break the framing or the protocol
  "ENOTSUP", // the implementation for this descriptor kind is not available
] as const;

/** One of {@link SOCKET_ERROR_CODES}. */
export type SocketErrorCode = typeof SOCKET_ERROR_CODES[number];

/** The socket calls of the unified API, used to say which call failed. */
export type SocketCall =
  | "socket"
  | "bind"
  | "listen"
  | "getsockname"
  | "accept"
  | "connect"
  | "send"
  | "recv"
  | "close";

/** Facts attached to a {@link SocketError}. */
export interface SocketErrorDetails {
  /** The call that failed. */
  readonly call?: SocketCall;
  /** The descriptor the call was made on, if any. */
  readonly fd?: number;
  /** The underlying cause (for example a `Deno.errors.*` instance). */
  readonly cause?: unknown;
}

/**
 * A typed socket failure: a POSIX-style code, the call and descriptor it concerns, and a
 * message that says what happened in words.
 *
 * @example Telling a refused connection apart
 * ```ts
 * import { SocketError } from "./errors.ts";
 * const err = new SocketError("ECONNREFUSED", "nobody listens on 127.0.0.1:9", { call: "connect" });
 * console.assert(err instanceof SocketError && err.code === "ECONNREFUSED");
 * ```
 */
export class SocketError extends Error {
  /** The POSIX-style code. */
  readonly code: SocketErrorCode;
  /** The call that failed, when known. */
  readonly call: SocketCall | undefined;
  /** The descriptor the call was made on, when known. */
  readonly fd: number | undefined;

  /**
   * Makes a socket error.
   *
   * @param code the POSIX-style code
   * @param message what happened, in words, with the facts (addresses, sizes, states)
   * @param details the call, the descriptor and the cause
   */
  constructor(code: SocketErrorCode, message: string, details: SocketErrorDetails = {}) {
    super(`${code}: ${message}`, details.cause === undefined ? {} : { cause: details.cause });
    this.name = "SocketError";
    this.code = code;
    this.call = details.call;
    this.fd = details.fd;
  }
}

/** A failure as a value: what cores return instead of throwing. */
export interface Failure {
  /** Tells a failure from a success. */
  readonly ok: false;
  /** What went wrong, as a POSIX-style code. */
  readonly code: SocketErrorCode;
  /** What happened, in words. */
  readonly message: string;
}

/** A success carrying a value. */
export interface Success<T> {
  /** Tells a success from a failure. */
  readonly ok: true;
  /** The value. */
  readonly value: T;
}

/** The outcome of a core operation: a value or a typed failure. */
export type Result<T> = Success<T> | Failure;

/** Builds a {@link Success}. */
export function ok<T>(value: T): Success<T> {
  return { ok: true, value };
}

/** Builds a {@link Failure}. */
export function fail(code: SocketErrorCode, message: string): Failure {
  return { ok: false, code, message };
}

/**
 * Turns a {@link Failure} into a throwable {@link SocketError} for the given call.
 *
 * @param failure the failure returned by a core
 * @param details the call and descriptor to attach
 * @returns the error to throw
 */
export function toSocketError(failure: Failure, details: SocketErrorDetails = {}): SocketError {
  return new SocketError(failure.code, failure.message, details);
}

/**
 * Unwraps a {@link Result}: returns the value, or throws the failure as a {@link SocketError}.
 *
 * @param result the core's result
 * @param details the call and descriptor to attach on failure
 * @returns the success value
 */
export function unwrap<T>(result: Result<T>, details: SocketErrorDetails = {}): T {
  if (result.ok) return result.value;
  throw toSocketError(result, details);
}
