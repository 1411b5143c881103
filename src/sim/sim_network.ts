/**
 * A simulated TCP network on virtual time: the unified {@link Sockets} API for network
 * descriptors, with the call order checked by the same `SocketTable` the TCP adapter uses.
 * Bytes travel in order with a seeded latency, a sender waits while its peer holds a full window,
 * and every wait is bounded by the I/O timeout (ETIMEDOUT), as on the real adapter.
 *
 * Faults, each at a seeded point of a run: `refuse` (a connect fails ECONNREFUSED), `reset` (a
 * connection is reset both ways: ECONNRESET), `close` (a connection ends: both ends read end of
 * stream, sends fail EPIPE), `stall` (a connection stops delivering: its reader runs into its
 * I/O timeout), `short-writes` (every send arrives in small random pieces).
 *
 * @module
 */

import { SocketError, type SocketErrorCode, toSocketError } from "../core/dispatch/errors.ts";
import { BACKLOG_MAX, SocketTable } from "../core/dispatch/socket_table.ts";
import {
  type Address,
  checkAddress,
  formatAddress,
  type NetworkAddress,
  type Sockets,
} from "../core/dispatch/sockets.ts";
import type { StateCall } from "../core/dispatch/socket_state.ts";
import type { VirtualTime } from "./virtual_time.ts";
import { deadable } from "./sim_storage.ts";

/** The network fault kinds. */
export const NETWORK_FAULTS = ["refuse", "reset", "close", "stall", "short-writes"] as const;
/** One network fault kind. */
export type NetworkFault = typeof NETWORK_FAULTS[number];

/** Bytes a connection holds unread before its sender waits. */
const WINDOW_BYTES = 64 * 1024;
/** Lowest dynamic port. */
const EPHEMERAL_MIN = 49152;

/** One direction's end of a connection. */
class Endpoint {
  readonly chunks: Uint8Array[] = [];
  buffered = 0;
  /** Set once the peer's close (or a `close` fault) arrived: reads drain, then end. */
  ended = false;
  failed: SocketErrorCode | undefined;
  stalled = false;
  peer: Endpoint | undefined;
  lastDeliveryMs = 0;
  readonly #wakers = new Set<() => void>();

  constructor(readonly local: NetworkAddress, readonly remote: NetworkAddress) {}

  wake(): void {
    for (const waker of [...this.#wakers]) waker();
  }

  /** Waits for any change, at most `timeoutMs`; false on timeout. */
  wait(time: VirtualTime, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (changed: boolean) => {
        this.#wakers.delete(waker);
        cancel();
        resolve(changed);
      };
      const waker = () => done(true);
      this.#wakers.add(waker);
      const cancel = time.at(timeoutMs, "io-timeout", () => done(false));
    });
  }
}

interface Listener {
  readonly address: NetworkAddress;
  backlog: number;
  readonly queue: Endpoint[];
  readonly wakers: Set<() => void>;
}

interface NetHandle {
  local?: NetworkAddress;
  listener?: Listener;
  end?: Endpoint;
}

/** One fault armed for a run: `kind` fires at the `atCall`-th send (or connect, for refuse). */
export interface ArmedNetworkFault {
  readonly kind: NetworkFault;
  readonly atCall: number;
}

/** What the world records of the network. */
export interface NetworkEvents {
  (line: string): void;
}

/** The simulated network: one listener space, any number of hosts' socket tables. */
export class SimNetwork {
  readonly #listeners = new Map<string, Listener>();
  readonly #usedPorts = new Set<string>();
  #nextPort = EPHEMERAL_MIN;
  #sends = 0;
  #connects = 0;
  readonly #tables: SocketTable<NetHandle>[] = [];
  /** Faults that fired, for the trace and the fault count. */
  readonly fired: string[] = [];

  /**
   * @param time the world's virtual time
   * @param options I/O timeout, latency bound, armed faults, and a trace sink
   */
  constructor(
    readonly time: VirtualTime,
    readonly options: {
      readonly ioTimeoutMs: number;
      readonly latencyMsMax: number;
      readonly faults: readonly ArmedNetworkFault[];
      readonly trace: NetworkEvents;
    },
  ) {}

  /** Descriptors still open across every host (the world's leak check). */
  openDescriptors(): number {
    return this.#tables.reduce((sum, table) => sum + table.openCount, 0);
  }

  /** Ports still bound or listening. */
  boundPorts(): string[] {
    return [...this.#usedPorts];
  }

  #fault(kind: NetworkFault, call: number): boolean {
    const hit = this.options.faults.some((f) => f.kind === kind && f.atCall === call);
    if (hit) {
      this.fired.push(kind);
      this.options.trace(`fault ${kind} at network call ${call}`);
    }
    return hit;
  }

  get #shortWrites(): boolean {
    return this.options.faults.some((f) => f.kind === "short-writes");
  }

  #key(address: NetworkAddress): string {
    return `${address.host}:${address.port}`;
  }

  #ephemeral(host: string): NetworkAddress {
    // Bounded by the port space: each turn tries the next port.
    for (let tries = 0; tries < 16384; tries++) {
      const port = this.#nextPort++;
      if (this.#nextPort > 65535) this.#nextPort = EPHEMERAL_MIN;
      const address: NetworkAddress = { kind: "network", host, port };
      if (!this.#usedPorts.has(this.#key(address))) return address;
    }
    throw new SocketError("EADDRNOTAVAIL", "no dynamic port left");
  }

  /** Delivers bytes (or the end of stream, `null`) to `to`, in order, after a seeded latency. */
  #deliver(to: Endpoint, bytes: Uint8Array | null): void {
    const latency = this.time.random.between(0, this.options.latencyMsMax);
    const atMs = Math.max(to.lastDeliveryMs, this.time.nowMs + latency);
    to.lastDeliveryMs = atMs;
    if (bytes !== null) to.buffered += bytes.length;
    this.time.at(atMs - this.time.nowMs, "deliver", () => {
      if (to.failed !== undefined) return;
      if (bytes === null) to.ended = true;
      else to.chunks.push(bytes);
      to.wake();
    });
  }

  #breakBoth(end: Endpoint, code: SocketErrorCode): void {
    for (const side of [end, end.peer]) {
      if (side === undefined) continue;
      side.failed ??= code;
      side.wake();
    }
  }

  /**
   * A host's network sockets on this network.
   *
   * @param name the host's name, for messages
   * @returns its sockets, and `kill`: the host is gone, the OS resets its connections and
   *   frees its ports and descriptors; its later calls fail ECONNRESET
   */
  host(name: string): { readonly sockets: Sockets; kill(): void; openCount(): number } {
    const table = new SocketTable<NetHandle>("network", { liveMax: 256 });
    this.#tables.push(table);
    let dead = false;
    const sockets = deadable(new HostNetwork(this, table, name).sockets(), () => dead);
    const kill = () => {
      dead = true;
      for (const fd of table.descriptors()) {
        const closed = table.close(fd);
        if (!closed.ok) continue;
        const handle = closed.value.handle;
        if (handle?.end !== undefined) this.#breakBoth(handle.end, "ECONNRESET");
        this.unbind(handle?.local);
      }
      this.time.touch();
    };
    return { sockets, kill, openCount: () => table.openCount };
  }

  /** @internal used by {@link HostNetwork} */
  bindAddress(address: NetworkAddress): NetworkAddress {
    const bound = address.port === 0 ? this.#ephemeral(address.host) : address;
    const key = this.#key(bound);
    if (this.#usedPorts.has(key)) {
      throw new SocketError("EADDRINUSE", `${formatAddress(bound)} is in use`);
    }
    this.#usedPorts.add(key);
    return bound;
  }

  /** @internal */
  unbind(address: NetworkAddress | undefined): void {
    if (address === undefined) return;
    this.#usedPorts.delete(this.#key(address));
    const listener = this.#listeners.get(this.#key(address));
    if (listener !== undefined) {
      this.#listeners.delete(this.#key(address));
      for (const end of listener.queue.splice(0)) this.#breakBoth(end, "ECONNRESET");
      for (const waker of listener.wakers) waker();
    }
  }

  /** @internal */
  listen(address: NetworkAddress, backlog: number): Listener {
    const listener: Listener = { address, backlog, queue: [], wakers: new Set() };
    this.#listeners.set(this.#key(address), listener);
    return listener;
  }

  /** @internal */
  connect(local: NetworkAddress, remote: NetworkAddress): Endpoint {
    this.#connects++;
    const listener = this.#listeners.get(this.#key(remote));
    if (this.#fault("refuse", this.#connects) || listener === undefined) {
      throw new SocketError("ECONNREFUSED", `nothing listens at ${formatAddress(remote)}`);
    }
    if (listener.queue.length >= listener.backlog) {
      throw new SocketError("ECONNREFUSED", `backlog of ${formatAddress(remote)} is full`);
    }
    const mine = new Endpoint(local, remote);
    const theirs = new Endpoint(remote, local);
    mine.peer = theirs;
    theirs.peer = mine;
    listener.queue.push(theirs);
    for (const waker of [...listener.wakers]) waker();
    return mine;
  }

  /** @internal */
  async send(end: Endpoint, bytes: Uint8Array, what: string): Promise<void> {
    const call = ++this.#sends;
    if (this.#fault("reset", call)) this.#breakBoth(end, "ECONNRESET");
    if (this.#fault("close", call)) {
      end.ended = true;
      end.wake();
      if (end.peer !== undefined) this.#deliver(end.peer, null);
    }
    if (this.#fault("stall", call) && end.peer !== undefined) end.peer.stalled = true;
    // Bounded: each turn moves a piece or waits for the window (bounded by the I/O timeout).
    for (let offset = 0; offset < bytes.length;) {
      if (end.failed !== undefined) throw new SocketError(end.failed, `${what}: connection broke`);
      if (end.ended) throw new SocketError("EPIPE", `${what}: connection closed`);
      const peer = end.peer!;
      if (peer.buffered >= WINDOW_BYTES) {
        if (!(await peer.wait(this.time, this.options.ioTimeoutMs))) {
          throw new SocketError("ETIMEDOUT", `${what}: the peer read nothing`);
        }
        continue;
      }
      const piece = this.#shortWrites
        ? this.time.random.between(1, Math.min(7, bytes.length - offset))
        : bytes.length - offset;
      if (piece < bytes.length - offset && !this.fired.includes("short-writes")) {
        this.fired.push("short-writes");
        this.options.trace(`fault short-writes: sends arrive in pieces of 1-7 bytes`);
      }
      const copy = bytes.slice(offset, offset + piece);
      offset += piece;
      if (!peer.stalled) this.#deliver(peer, copy);
    }
  }

  /** @internal */
  async recv(end: Endpoint, into: Uint8Array, what: string): Promise<number | null> {
    // Bounded: each turn takes bytes, ends, or waits (bounded by the I/O timeout).
    for (;;) {
      const chunk = end.chunks[0];
      if (chunk !== undefined) {
        const got = Math.min(chunk.length, into.length);
        into.set(chunk.subarray(0, got));
        if (got === chunk.length) end.chunks.shift();
        else end.chunks[0] = chunk.subarray(got);
        end.buffered -= got;
        end.wake();
        return got;
      }
      if (end.failed !== undefined) throw new SocketError(end.failed, `${what}: connection broke`);
      if (end.ended) return null;
      if (!(await end.wait(this.time, this.options.ioTimeoutMs))) {
        throw new SocketError("ETIMEDOUT", `${what}: nothing arrived`);
      }
    }
  }

  /** @internal */
  close(end: Endpoint | undefined): void {
    if (end === undefined) return;
    const peer = end.peer;
    end.failed ??= "EBADF";
    end.wake();
    if (peer !== undefined && peer.failed === undefined) this.#deliver(peer, null);
  }

  /** @internal */
  async accept(listener: Listener, what: string): Promise<Endpoint> {
    // Bounded: each turn takes a connection or waits (bounded by the I/O timeout).
    for (;;) {
      const end = listener.queue.shift();
      if (end !== undefined) return end;
      if (!this.#listeners.has(this.#key(listener.address))) {
        throw new SocketError("EBADF", `${what}: the listener was closed`);
      }
      const woke = await new Promise<boolean>((resolve) => {
        const waker = () => {
          listener.wakers.delete(waker);
          cancel();
          resolve(true);
        };
        listener.wakers.add(waker);
        const cancel = this.time.at(this.options.ioTimeoutMs, "accept-timeout", () => {
          listener.wakers.delete(waker);
          resolve(false);
        });
      });
      if (!woke) throw new SocketError("ETIMEDOUT", `${what}: no connection arrived`);
    }
  }
}

/** One host's view of the network: its descriptor table and the Sockets methods. */
class HostNetwork {
  constructor(
    readonly network: SimNetwork,
    readonly table: SocketTable<NetHandle>,
    readonly name: string,
  ) {}

  #begin(fd: number, call: StateCall): NetHandle {
    const entry = this.table.begin(fd, call);
    if (!entry.ok) throw toSocketError(entry, { call, fd });
    entry.value.handle ??= {};
    return entry.value.handle;
  }

  #fail(fd: number, call: StateCall, error: unknown): never {
    const code = error instanceof SocketError ? error.code : "EINVAL";
    const message = error instanceof Error ? error.message : String(error);
    this.table.complete(fd, call, { type: "error", code, message });
    throw error instanceof SocketError ? error : new SocketError(code, message, { call, fd });
  }

  async #call<T>(fd: number, call: StateCall, body: (handle: NetHandle) => Promise<T>): Promise<T> {
    const handle = this.#begin(fd, call);
    this.network.time.touch();
    try {
      return await body(handle);
    } catch (error) {
      return this.#fail(fd, call, error);
    } finally {
      this.network.time.touch();
    }
  }

  #what(fd: number, call: string): string {
    return `${call} on ${this.name} descriptor ${fd}`;
  }

  /** The calls that set a socket up: socket, bind, listen, getsockname. */
  #setupCalls(): Pick<Sockets, "socket" | "bind" | "listen" | "getsockname"> {
    const net = this.network;
    const table = this.table;
    return {
      socket: (kind) => {
        if (kind !== "network") {
          return Promise.reject(new SocketError("EINVAL", `not a ${kind} implementation`));
        }
        const fd = table.open({});
        return fd.ok ? Promise.resolve(fd.value) : Promise.reject(toSocketError(fd));
      },
      bind: (fd, address) =>
        this.#call(fd, "bind", (handle) => {
          const checked = checkAddress(address, "network");
          if (!checked.ok) throw toSocketError(checked, { call: "bind", fd });
          handle.local = net.bindAddress(address as NetworkAddress);
          table.complete(fd, "bind", { type: "bound", local: handle.local });
          return Promise.resolve();
        }),
      listen: (fd, backlog) =>
        this.#call(fd, "listen", (handle) => {
          if (!Number.isInteger(backlog) || backlog < 1 || backlog > BACKLOG_MAX) {
            throw new SocketError("EINVAL", `backlog must be in [1, ${BACKLOG_MAX}]`);
          }
          handle.listener = net.listen(handle.local!, backlog);
          table.complete(fd, "listen", { type: "listening", backlog });
          return Promise.resolve();
        }),
      getsockname: (fd) => {
        const entry = table.begin(fd, "getsockname");
        if (!entry.ok) return Promise.reject(toSocketError(entry, { call: "getsockname", fd }));
        const state = entry.value.state;
        if (state.phase === "created" || state.local === undefined) {
          return Promise.reject(new SocketError("EINVAL", "socket has no address"));
        }
        return Promise.resolve(state.local as Address);
      },
    };
  }

  /** The calls that make and end a connection: accept, connect, close. */
  #connectionCalls(): Pick<Sockets, "accept" | "connect" | "close"> {
    const net = this.network;
    const table = this.table;
    return {
      accept: (fd) =>
        this.#call(fd, "accept", async (handle) => {
          const end = await net.accept(handle.listener!, this.#what(fd, "accept"));
          table.complete(fd, "accept", { type: "done" });
          const accepted = table.openConnected(end.local, end.remote, { end });
          if (!accepted.ok) {
            net.close(end);
            throw toSocketError(accepted, { call: "accept", fd });
          }
          return accepted.value;
        }),
      connect: (fd, address) =>
        this.#call(fd, "connect", async (handle) => {
          const checked = checkAddress(address, "network");
          if (!checked.ok) throw toSocketError(checked, { call: "connect", fd });
          const remote = address as NetworkAddress;
          const local = handle.local ?? net.bindAddress({ ...remote, port: 0 });
          handle.local = local;
          await new Promise<void>((resolve) =>
            net.time.at(net.time.random.between(0, net.options.latencyMsMax), "syn", resolve)
          );
          handle.end = net.connect(local, remote);
          table.complete(fd, "connect", { type: "connected", local, remote });
        }),
      close: (fd) => {
        const closed = table.close(fd);
        if (!closed.ok) return Promise.reject(toSocketError(closed, { call: "close", fd }));
        const handle = closed.value.handle;
        net.close(handle?.end);
        net.unbind(handle?.local);
        net.time.touch();
        return Promise.resolve();
      },
    };
  }

  /** The unified API over this host's table. */
  sockets(): Sockets {
    const net = this.network;
    const table = this.table;
    return {
      ...this.#setupCalls(),
      ...this.#connectionCalls(),
      send: (fd, bytes) =>
        this.#call(fd, "send", async (handle) => {
          await net.send(handle.end!, bytes, this.#what(fd, "send"));
          table.complete(fd, "send", { type: "done" });
        }),
      recv: (fd, into) =>
        this.#call(fd, "recv", async (handle) => {
          if (!(into instanceof Uint8Array) || into.length === 0) {
            throw new SocketError("EINVAL", "recv needs a non-empty Uint8Array to fill");
          }
          const got = await net.recv(handle.end!, into, this.#what(fd, "recv"));
          table.complete(fd, "recv", got === null ? { type: "eof" } : { type: "done" });
          return got;
        }),
    };
  }
}
