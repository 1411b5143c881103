/**
 * The unified socket API: one interface for network (TCP) and storage (STP) sockets, shaped
 * after the seeds' socket library.
 *
 * @module
 */

import type { SocketKind } from "./descriptor.ts";
import { fail, ok, type Result } from "./errors.ts";

/** A TCP address: host and port. */
export interface NetworkAddress {
  /** Names the kind. */
  readonly kind: "network";
  /** An IPv4 literal; lanfree's adapters bind and connect on 127.0.0.1 in tests. */
  readonly host: string;
  /** 0..65535; 0 in `bind` asks for a dynamic (ephemeral) port. */
  readonly port: number;
}

/** A storage address: the storage transport group and a port inside it. */
export interface StorageAddress {
  /** Names the kind. */
  readonly kind: "storage";
  /** The STG id, as configured in the region. */
  readonly stg: number;
  /** 0..65535; 0 in `bind` asks for a dynamic port from the STG's ephemeral range. */
  readonly port: number;
}

/** Either kind of address. */
export type Address = NetworkAddress | StorageAddress;

/** Largest port number of either kind. */
export const PORT_MAX = 65535;

/**
 * The unified socket API. A descriptor's value tells its kind (see `descriptor.ts`), so a router
 * can send each call to the implementation it belongs to.
 *
 * Every method rejects with a `SocketError` (never a string, never an untyped error) whose code
 * says what went wrong. Calls that wait (`accept`, `connect`, `send`, `recv`) are bounded by the
 * implementation's timeout and fail with ETIMEDOUT when it runs out.
 */
export interface Sockets {
  /** Opens a socket of the given kind, bound to nothing. */
  socket(kind: SocketKind): Promise<number>;
  /** Gives the socket a local address; port 0 picks a dynamic port. */
  bind(fd: number, address: Address): Promise<void>;
  /** Starts accepting connections, with at most `backlog` of them waiting. */
  listen(fd: number, backlog: number): Promise<void>;
  /** The local address of a bound, listening or connected socket. */
  getsockname(fd: number): Promise<Address>;
  /** Waits for a connection on a listening socket; returns the connected descriptor. */
  accept(fd: number): Promise<number>;
  /** Connects to a listening socket at `address`. */
  connect(fd: number, address: Address): Promise<void>;
  /** Sends every byte of `bytes` (waiting while the peer is slow); resolves when all are sent. */
  send(fd: number, bytes: Uint8Array): Promise<void>;
  /**
   * Receives at most `into.length` bytes into `into`.
   *
   * @returns the number of bytes received (at least 1), or `null` at end of stream
   */
  recv(fd: number, into: Uint8Array): Promise<number | null>;
  /** Closes the socket and releases its descriptor; later calls on it fail with EBADF. */
  close(fd: number): Promise<void>;
}

/**
 * Checks an address before it reaches an implementation.
 *
 * @param address what the caller passed
 * @param kind the kind of the socket it is used with
 * @returns the address, or EAFNOSUPPORT for a kind mismatch, EINVAL for a malformed address
 */
export function checkAddress(address: Address, kind: SocketKind): Result<Address> {
  if (address === null || typeof address !== "object") {
    return fail("EINVAL", `address must be an object, got ${String(address)}`);
  }
  if (address.kind !== kind) {
    return fail("EAFNOSUPPORT", `a ${kind} socket cannot use a ${String(address.kind)} address`);
  }
  if (!Number.isInteger(address.port) || address.port < 0 || address.port > PORT_MAX) {
    return fail("EINVAL", `port must be an integer in [0, ${PORT_MAX}], got ${address.port}`);
  }
  if (address.kind === "network") {
    if (typeof address.host !== "string" || address.host.length === 0) {
      return fail("EINVAL", "network address needs a host");
    }
  } else if (!Number.isInteger(address.stg) || address.stg < 0 || address.stg > 0xffff) {
    return fail("EINVAL", `STG id must be an integer in [0, 65535], got ${address.stg}`);
  }
  return ok(address);
}

/** Renders an address for messages: `127.0.0.1:8080` or `stg 1 port 49152`. */
export function formatAddress(address: Address): string {
  return address.kind === "network"
    ? `${address.host}:${address.port}`
    : `stg ${address.stg} port ${address.port}`;
}
