/**
 * The dispatch layer (the seeds' "connect layer"): one {@link Sockets} that sends each call to
 * the network or the storage implementation by the value of the descriptor alone.
 *
 * @module
 */

import { kindOfDescriptor, type SocketKind } from "./descriptor.ts";
import { type SocketCall, SocketError, toSocketError } from "./errors.ts";
import { type Address, checkAddress, type Sockets } from "./sockets.ts";

/** The implementation of each kind. */
export type SocketsByKind = Readonly<Record<SocketKind, Sockets>>;

/**
 * Builds the router.
 *
 * @param implementations the network and the storage implementation
 * @returns a `Sockets` whose every call goes to the implementation the descriptor's value names;
 *   a value of no kind is EBADF, an address of the wrong kind is EAFNOSUPPORT
 *
 * @example A storage call while no storage transport exists
 * ```ts
 * import { createRouter, unavailableSockets } from "./router.ts";
 * import { SocketError } from "./errors.ts";
 * import { STORAGE_FD_MIN } from "./descriptor.ts";
 * const router = createRouter({
 *   network: unavailableSockets("network", "no network in this example"),
 *   storage: unavailableSockets("storage", "no region attached"),
 * });
 * const err = await router.send(STORAGE_FD_MIN, new Uint8Array(1)).catch((e) => e);
 * console.assert(err instanceof SocketError && err.code === "ENOTSUP");
 * ```
 */
export function createRouter(implementations: SocketsByKind): Sockets {
  const route = (fd: number, call: SocketCall): Sockets => {
    const kind = kindOfDescriptor(fd);
    if (kind === undefined) {
      throw new SocketError("EBADF", `${String(fd)} is not a socket descriptor of any kind`, {
        call,
        fd,
      });
    }
    return implementations[kind];
  };
  const routeWithAddress = (fd: number, address: Address, call: SocketCall): Sockets => {
    const implementation = route(fd, call);
    const checked = checkAddress(address, kindOfDescriptor(fd) as SocketKind);
    if (!checked.ok) throw toSocketError(checked, { call, fd });
    return implementation;
  };
  const expectKind = (fd: number, kind: SocketKind, call: SocketCall): number => {
    if (kindOfDescriptor(fd) !== kind) {
      throw new SocketError(
        "EINVAL",
        `the ${kind} implementation returned descriptor ${fd}, which is not in the ${kind} range`,
        { call, fd },
      );
    }
    return fd;
  };
  return {
    async socket(kind) {
      if (kind !== "network" && kind !== "storage") {
        throw new SocketError("EINVAL", `unknown socket kind ${String(kind)}`, { call: "socket" });
      }
      return expectKind(await implementations[kind].socket(kind), kind, "socket");
    },
    bind: async (fd, address) => await routeWithAddress(fd, address, "bind").bind(fd, address),
    listen: async (fd, backlog) => await route(fd, "listen").listen(fd, backlog),
    getsockname: async (fd) => await route(fd, "getsockname").getsockname(fd),
    accept: async (fd) => {
      const accepted = await route(fd, "accept").accept(fd);
      return expectKind(accepted, kindOfDescriptor(fd) as SocketKind, "accept");
    },
    connect: async (fd, address) =>
      await routeWithAddress(fd, address, "connect").connect(fd, address),
    send: async (fd, bytes) => await route(fd, "send").send(fd, bytes),
    recv: async (fd, into) => await route(fd, "recv").recv(fd, into),
    close: async (fd) => await route(fd, "close").close(fd),
  };
}

/**
 * A `Sockets` for a kind that is not available here: every call fails with ENOTSUP and says
 * why. The router uses it for storage until a region is attached.
 *
 * @param kind the kind it stands in for
 * @param reason why the kind is unavailable, shown in every error
 */
export function unavailableSockets(kind: SocketKind, reason: string): Sockets {
  const refuse = (call: SocketCall, fd?: number): Promise<never> =>
    Promise.reject(
      new SocketError("ENOTSUP", `${kind} sockets are not available: ${reason}`, { call, fd }),
    );
  return {
    socket: () => refuse("socket"),
    bind: (fd) => refuse("bind", fd),
    listen: (fd) => refuse("listen", fd),
    getsockname: (fd) => refuse("getsockname", fd),
    accept: (fd) => refuse("accept", fd),
    connect: (fd) => refuse("connect", fd),
    send: (fd) => refuse("send", fd),
    recv: (fd) => refuse("recv", fd),
    close: (fd) => refuse("close", fd),
  };
}
