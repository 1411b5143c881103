/**
 * Network sockets: the unified `Sockets` API over `Deno.listen` / `Deno.connect`.
 *
 * Thin: every legality decision (call order, pending calls, what a failure does to the socket)
 * comes from the core `SocketTable`; this file only performs the Deno calls and maps Deno's
 * errors to socket error codes.
 *
 * Deno specifics, documented in ARCHITECTURE.md:
 * - `bind` reserves the port at once with `Deno.listen` (so EADDRINUSE is reported by `bind`,
 *   as POSIX does); `listen` then starts accepting on that reservation. The kernel's backlog
 *   applies; `listen`'s backlog is validated and recorded, not enforced by Deno.
 * - `Deno.connect` cannot choose a local port, so `connect` on a bound socket gives the
 *   reservation back and connects from a dynamic port; `getsockname` reports the real one.
 * - A timed-out `send` or `recv` closes the connection: a read still in flight could otherwise
 *   land bytes in a buffer the caller has reused.
 *
 * @module
 */

import { type CallOutcome, SocketTable } from "../core/dispatch/socket_table.ts";
import { SocketError, type SocketErrorCode, toSocketError } from "../core/dispatch/errors.ts";
import {
  checkAddress,
  formatAddress,
  type NetworkAddress,
  type Sockets,
} from "../core/dispatch/sockets.ts";
import type { StateCall } from "../core/dispatch/socket_state.ts";
import { BACKLOG_MAX } from "../core/dispatch/socket_table.ts";

/** Options of {@link createTcpSockets}. */
export interface TcpSocketsOptions {
  /** Bound on every wait (accept, connect, each write and read). Default 30 000 ms. */
  readonly ioTimeoutMs?: number;
  /** How many network sockets may be open at once. Default 4096. */
  readonly liveMax?: number;
}

interface TcpHandle {
  listener?: Deno.TcpListener;
  conn?: Deno.TcpConn;
  pendingAccept?: Promise<Deno.TcpConn>;
}

/** Maps a Deno error to a socket error code. */
export function codeOfDenoError(error: unknown): SocketErrorCode {
  if (error instanceof SocketError) return error.code;
  if (error instanceof Deno.errors.ConnectionRefused) return "ECONNREFUSED";
  if (error instanceof Deno.errors.ConnectionReset) return "ECONNRESET";
  if (error instanceof Deno.errors.ConnectionAborted) return "ECONNRESET";
  if (error instanceof Deno.errors.BrokenPipe) return "EPIPE";
  if (error instanceof Deno.errors.AddrInUse) return "EADDRINUSE";
  if (error instanceof Deno.errors.AddrNotAvailable) return "EADDRNOTAVAIL";
  if (error instanceof Deno.errors.TimedOut) return "ETIMEDOUT";
  if (error instanceof Deno.errors.NotConnected) return "ENOTCONN";
  if (error instanceof Deno.errors.BadResource) return "EBADF";
  if (error instanceof Deno.errors.Interrupted) return "EBADF";
  return "EINVAL";
}

function toNetworkAddress(addr: Deno.Addr): NetworkAddress {
  const net = addr as Deno.NetAddr;
  return { kind: "network", host: net.hostname, port: net.port };
}

/**
 * Races `promise` against the timeout. On timeout, `onTimeout` runs (to close what the late
 * promise would leak) and the race rejects with ETIMEDOUT.
 */
async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  what: string,
  onTimeout: (late: Promise<T>) => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout(promise);
      reject(new SocketError("ETIMEDOUT", `${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Deno reports a read on a reset connection as end of stream. A zero-byte write tells the two
 * apart: it succeeds after a clean close and fails (EPIPE) after a reset.
 */
async function wasReset(conn: Deno.TcpConn): Promise<boolean> {
  try {
    await conn.write(new Uint8Array(0));
    return false;
  } catch {
    return true;
  }
}

function closeQuietly(resource: { close(): void } | undefined): void {
  try {
    resource?.close();
  } catch {
    // Already closed: nothing to release.
  }
}

/**
 * Creates the network implementation of `Sockets`.
 *
 * @param options the I/O timeout and the descriptor table size
 * @returns a `Sockets` whose descriptors are all in the network range
 *
 * @example Echo over 127.0.0.1
 * ```ts
 * import { createTcpSockets } from "./tcp.ts";
 * const net = createTcpSockets({ ioTimeoutMs: 5000 });
 * const server = await net.socket("network");
 * await net.bind(server, { kind: "network", host: "127.0.0.1", port: 0 });
 * await net.listen(server, 8);
 * const address = await net.getsockname(server);
 * const client = await net.socket("network");
 * const [accepted] = await Promise.all([net.accept(server), net.connect(client, address)]);
 * await net.send(client, new Uint8Array([42]));
 * const into = new Uint8Array(1);
 * console.assert((await net.recv(accepted, into)) === 1 && into[0] === 42);
 * for (const fd of [client, accepted, server]) await net.close(fd);
 * ```
 */
export function createTcpSockets(options: TcpSocketsOptions = {}): Sockets {
  const ioTimeoutMs = options.ioTimeoutMs ?? 30_000;
  if (!Number.isInteger(ioTimeoutMs) || ioTimeoutMs < 1) {
    throw new RangeError(`ioTimeoutMs must be a positive integer, got ${ioTimeoutMs}`);
  }
  const table = new SocketTable<TcpHandle>("network", { liveMax: options.liveMax ?? 4096 });

  const begin = (fd: number, call: StateCall) => {
    const entry = table.begin(fd, call);
    if (!entry.ok) throw toSocketError(entry, { call, fd });
    entry.value.handle ??= {};
    return { entry: entry.value, handle: entry.value.handle };
  };
  /** Reports a failure to the table and rethrows it as a SocketError. */
  const failCall = (fd: number, call: StateCall, error: unknown): never => {
    const code = table.lookup(fd).ok ? codeOfDenoError(error) : "EBADF";
    const message = error instanceof Error ? error.message : String(error);
    table.complete(fd, call, { type: "error", code, message });
    if (error instanceof SocketError && error.fd === fd) throw error;
    throw new SocketError(code, `${call} on descriptor ${fd}: ${message}`, {
      call,
      fd,
      cause: error,
    });
  };
  const complete = (fd: number, call: StateCall, outcome: CallOutcome) =>
    table.complete(fd, call, outcome);
  const dropConnection = (handle: TcpHandle) => {
    closeQuietly(handle.conn);
  };

  return {
    socket(kind) {
      if (kind !== "network") {
        return Promise.reject(
          new SocketError("EINVAL", `the TCP implementation opens network sockets, not ${kind}`, {
            call: "socket",
          }),
        );
      }
      const fd = table.open({});
      return fd.ok
        ? Promise.resolve(fd.value)
        : Promise.reject(toSocketError(fd, { call: "socket" }));
    },

    bind(fd, address) {
      const checked = checkAddress(address, "network");
      if (!checked.ok) return Promise.reject(toSocketError(checked, { call: "bind", fd }));
      try {
        const { handle } = begin(fd, "bind");
        const network = address as NetworkAddress;
        const listener = Deno.listen({
          hostname: network.host,
          port: network.port,
          transport: "tcp",
        });
        handle.listener = listener;
        complete(fd, "bind", { type: "bound", local: toNetworkAddress(listener.addr) });
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error instanceof SocketError ? error : catchFail(fd, "bind", error));
      }
    },

    listen(fd, backlog) {
      if (!Number.isInteger(backlog) || backlog < 1 || backlog > BACKLOG_MAX) {
        return Promise.reject(
          new SocketError(
            "EINVAL",
            `backlog must be an integer in [1, ${BACKLOG_MAX}], got ${backlog}`,
            {
              call: "listen",
              fd,
            },
          ),
        );
      }
      try {
        begin(fd, "listen");
        complete(fd, "listen", { type: "listening", backlog });
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error);
      }
    },

    getsockname(fd) {
      const entry = table.begin(fd, "getsockname");
      if (!entry.ok) return Promise.reject(toSocketError(entry, { call: "getsockname", fd }));
      const state = entry.value.state;
      if (state.phase === "created" || state.local === undefined) {
        return Promise.reject(
          new SocketError("EINVAL", "socket has no address", { call: "getsockname", fd }),
        );
      }
      return Promise.resolve(state.local);
    },

    async accept(fd) {
      const { handle } = begin(fd, "accept");
      const listener = handle.listener!;
      handle.pendingAccept ??= listener.accept();
      let conn: Deno.TcpConn;
      try {
        conn = await withTimeout(
          handle.pendingAccept,
          ioTimeoutMs,
          `accept on descriptor ${fd}`,
          () => {},
        );
        handle.pendingAccept = undefined;
      } catch (error) {
        if (!(error instanceof SocketError && error.code === "ETIMEDOUT")) {
          handle.pendingAccept = undefined;
        }
        return failCall(fd, "accept", error);
      }
      complete(fd, "accept", { type: "done" });
      conn.setNoDelay(true);
      const accepted = table.openConnected(
        toNetworkAddress(conn.localAddr),
        toNetworkAddress(conn.remoteAddr),
        { conn },
      );
      if (!accepted.ok) {
        closeQuietly(conn);
        throw toSocketError(accepted, { call: "accept", fd });
      }
      return accepted.value;
    },

    async connect(fd, address) {
      const checked = checkAddress(address, "network");
      if (!checked.ok) throw toSocketError(checked, { call: "connect", fd });
      const { handle } = begin(fd, "connect");
      closeQuietly(handle.listener); // Deno.connect cannot reuse the bound port.
      handle.listener = undefined;
      const network = address as NetworkAddress;
      let conn: Deno.TcpConn;
      try {
        conn = await withTimeout(
          Deno.connect({ hostname: network.host, port: network.port, transport: "tcp" }),
          ioTimeoutMs,
          `connect to ${formatAddress(address)}`,
          (late) => late.then(closeQuietly, () => {}),
        );
      } catch (error) {
        return failCall(fd, "connect", error);
      }
      if (!table.lookup(fd).ok) {
        closeQuietly(conn); // closed while connecting
        throw new SocketError("EBADF", `descriptor ${fd} was closed while connecting`, {
          call: "connect",
          fd,
        });
      }
      conn.setNoDelay(true);
      handle.conn = conn;
      complete(fd, "connect", {
        type: "connected",
        local: toNetworkAddress(conn.localAddr),
        remote: toNetworkAddress(conn.remoteAddr),
      });
    },

    async send(fd, bytes) {
      const { handle } = begin(fd, "send");
      const conn = handle.conn!;
      let sent = 0;
      try {
        // Bounded: each write moves at least one byte or throws.
        while (sent < bytes.length) {
          const wrote = await withTimeout(
            conn.write(bytes.subarray(sent)),
            ioTimeoutMs,
            `send on descriptor ${fd}`,
            () => dropConnection(handle),
          );
          sent += wrote;
        }
      } catch (error) {
        return failCall(fd, "send", error);
      }
      complete(fd, "send", { type: "done" });
    },

    async recv(fd, into) {
      if (!(into instanceof Uint8Array) || into.length === 0) {
        throw new SocketError("EINVAL", "recv needs a non-empty Uint8Array to fill", {
          call: "recv",
          fd,
        });
      }
      const { entry, handle } = begin(fd, "recv");
      if (entry.state.phase === "connected" && entry.state.peerClosed) {
        complete(fd, "recv", { type: "eof" });
        return null;
      }
      let got: number | null;
      try {
        got = await withTimeout(
          handle.conn!.read(into),
          ioTimeoutMs,
          `recv on descriptor ${fd}`,
          () => dropConnection(handle),
        );
      } catch (error) {
        return failCall(fd, "recv", error);
      }
      if (got === null && await wasReset(handle.conn!)) {
        return failCall(
          fd,
          "recv",
          new SocketError("ECONNRESET", `peer reset the connection on descriptor ${fd}`),
        );
      }
      complete(fd, "recv", got === null ? { type: "eof" } : { type: "done" });
      return got;
    },

    close(fd) {
      const entry = table.close(fd);
      if (!entry.ok) return Promise.reject(toSocketError(entry, { call: "close", fd }));
      const handle = entry.value.handle;
      closeQuietly(handle?.conn);
      closeQuietly(handle?.listener);
      handle?.pendingAccept?.then(closeQuietly, () => {});
      return Promise.resolve();
    },
  };

  function catchFail(fd: number, call: StateCall, error: unknown): SocketError {
    try {
      return failCall(fd, call, error);
    } catch (thrown) {
      return thrown as SocketError;
    }
  }
}
