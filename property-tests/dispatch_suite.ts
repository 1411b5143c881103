/**
 * Conformance suites of the dispatch layer.
 *
 * - {@link descriptorSuite}: the descriptor rule itself (pure; no implementation needed): every
 *   descriptor routes to its kind, no two live descriptors collide, closed descriptors are
 *   rejected, reuse follows the documented rule, and the router sends each call by value.
 * - {@link socketsSuite}: any `Sockets` implementation of one kind, driven by random call
 *   sequences (`fc.commands`) against a small model of legal socket states.
 *
 * @module
 */

import fc from "fast-check";
import {
  DESCRIPTOR_RANGES,
  DescriptorSpace,
  kindOfDescriptor,
  type SocketKind,
} from "../src/core/dispatch/descriptor.ts";
import { SocketError } from "../src/core/dispatch/errors.ts";
import type { Address, Sockets } from "../src/core/dispatch/sockets.ts";
import { createRouter } from "../src/core/dispatch/router.ts";
import { defineProperty, type Suite } from "./_suite.ts";

const kindArbitrary = fc.constantFrom<SocketKind>("network", "storage");

/** Opens (true) or closes the n-th live descriptor (a number). */
const spaceOperations = fc.array(fc.oneof(fc.constant(true as const), fc.nat(64)), {
  maxLength: 200,
});

/** Checks the rule on a space of `kind` after `operations`; returns a message on violation. */
function exerciseSpace(
  kind: SocketKind,
  width: number,
  liveMax: number,
  operations: ReadonlyArray<true | number>,
): void {
  const min = DESCRIPTOR_RANGES[kind].min;
  const space = new DescriptorSpace(kind, { range: { min, max: min + width - 1 }, liveMax });
  const live: number[] = [];
  const released: number[] = []; // in release order, since the last wrap
  let handedOut = 0;
  for (const operation of operations) {
    if (operation === true) {
      const fd = space.allocate();
      if (live.length >= Math.min(liveMax, width)) {
        if (fd.ok || fd.code !== "ENOBUFS") throw new Error(`expected ENOBUFS when full`);
        continue;
      }
      if (!fd.ok) throw new Error(`allocate failed with room left: ${fd.message}`);
      if (kindOfDescriptor(fd.value) !== kind) {
        throw new Error(`${fd.value} does not route to ${kind}`);
      }
      if (live.includes(fd.value)) throw new Error(`${fd.value} handed out while live`);
      // Reuse rule: before the space has handed out `width` values, nothing is reused.
      if (handedOut < width && released.includes(fd.value)) {
        throw new Error(`${fd.value} reused before the space wrapped`);
      }
      handedOut++;
      live.push(fd.value);
    } else if (live.length > 0) {
      const [fd] = live.splice(operation % live.length, 1) as [number];
      if (!space.release(fd).ok) throw new Error(`release of live ${fd} failed`);
      const again = space.release(fd);
      if (again.ok || again.code !== "EBADF") throw new Error(`double release of ${fd} not EBADF`);
      if (space.isLive(fd)) throw new Error(`${fd} still live after release`);
      released.push(fd);
    }
  }
  if (space.liveCount !== live.length) {
    throw new Error(`live count ${space.liveCount} != ${live.length}`);
  }
}

/** Suite of the descriptor rule and the router; pure, needs no implementation. */
export function descriptorSuite(): Suite {
  return {
    name: "dispatch/descriptors",
    properties: [
      defineProperty(
        "every descriptor routes to its kind, live ones never collide, released ones are EBADF, reuse only after wrap",
        { numRuns: 300 },
        () =>
          fc.property(
            kindArbitrary,
            fc.integer({ min: 1, max: 40 }),
            fc.integer({ min: 1, max: 50 }),
            spaceOperations,
            (kind, width, liveMax, operations) => exerciseSpace(kind, width, liveMax, operations),
          ),
      ),
      defineProperty(
        "the two ranges are disjoint and values outside both have no kind",
        { numRuns: 1000 },
        () =>
          fc.property(
            fc.oneof(
              fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
              fc.double(),
              fc.constantFrom(0, 1, 2, 2 ** 30 - 1, 2 ** 30, 2 ** 31 - 1, 2 ** 31),
            ),
            (value) => {
              const kind = kindOfDescriptor(value);
              const inNetwork = Number.isInteger(value) && value >= 3 && value < 2 ** 30;
              const inStorage = Number.isInteger(value) && value >= 2 ** 30 && value < 2 ** 31;
              const expected = inNetwork ? "network" : inStorage ? "storage" : undefined;
              if (kind !== expected) {
                throw new Error(
                  `${value} routed to ${kind}, expected ${expected}`,
                );
              }
            },
          ),
      ),
      defineProperty(
        "the router sends every call to the implementation its descriptor's value names",
        { numRuns: 200 },
        () =>
          fc.asyncProperty(
            fc.array(fc.tuple(kindArbitrary, fc.constantFrom(...routedCalls)), { maxLength: 30 }),
            async (calls) => {
              const seen: Array<[SocketKind, string]> = [];
              const router = createRouter({
                network: recordingSockets("network", seen),
                storage: recordingSockets("storage", seen),
              });
              for (const [kind, call] of calls) {
                const fd = await router.socket(kind);
                if (kindOfDescriptor(fd) !== kind) throw new Error(`socket(${kind}) gave ${fd}`);
                seen.length = 0;
                await invoke(router, call, fd, kind);
                if (seen.length !== 1 || seen[0]![0] !== kind || seen[0]![1] !== call) {
                  throw new Error(`${call} on ${kind} fd ${fd} reached ${JSON.stringify(seen)}`);
                }
              }
            },
          ),
      ),
    ],
  };
}

const routedCalls = [
  "bind",
  "listen",
  "getsockname",
  "accept",
  "connect",
  "send",
  "recv",
  "close",
] as const;

function addressOf(kind: SocketKind): Address {
  return kind === "network" ? { kind, host: "127.0.0.1", port: 1 } : { kind, stg: 1, port: 1 };
}

async function invoke(
  sockets: Sockets,
  call: typeof routedCalls[number],
  fd: number,
  kind: SocketKind,
) {
  switch (call) {
    case "bind":
      return await sockets.bind(fd, addressOf(kind));
    case "listen":
      return await sockets.listen(fd, 1);
    case "getsockname":
      return await sockets.getsockname(fd);
    case "accept":
      return await sockets.accept(fd);
    case "connect":
      return await sockets.connect(fd, addressOf(kind));
    case "send":
      return await sockets.send(fd, new Uint8Array(1));
    case "recv":
      return await sockets.recv(fd, new Uint8Array(1));
    case "close":
      return await sockets.close(fd);
  }
}

/** A fake implementation that records which calls reach it. */
function recordingSockets(kind: SocketKind, seen: Array<[SocketKind, string]>): Sockets {
  const space = new DescriptorSpace(kind);
  const record = (call: string) => seen.push([kind, call]);
  const next = () => {
    const fd = space.allocate();
    if (!fd.ok) throw new SocketError(fd.code, fd.message);
    return fd.value;
  };
  return {
    socket: () => Promise.resolve(next()),
    bind: () => Promise.resolve(void record("bind")),
    listen: () => Promise.resolve(void record("listen")),
    getsockname: () => Promise.resolve((record("getsockname"), addressOf(kind))),
    accept: () => Promise.resolve((record("accept"), next())),
    connect: () => Promise.resolve(void record("connect")),
    send: () => Promise.resolve(void record("send")),
    recv: () => Promise.resolve((record("recv"), 1)),
    close: () => Promise.resolve(void record("close")),
  };
}

export { socketsSuite, type SocketsUnderTest } from "./dispatch_model.ts";
