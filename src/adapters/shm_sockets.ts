/**
 * The storage {@link Sockets} methods: each checks call order in the `SocketTable`, runs one core
 * operation, and waits through the {@link Pump} where the core says to wait.
 *
 * @module
 */

import { ok, type Result, SocketError, toSocketError, unwrap } from "../core/dispatch/errors.ts";
import type { SocketKind } from "../core/dispatch/descriptor.ts";
import type { SocketTable } from "../core/dispatch/socket_table.ts";
import { localAddressOf } from "../core/dispatch/socket_state.ts";
import {
  type Address,
  checkAddress,
  type Sockets,
  type StorageAddress,
} from "../core/dispatch/sockets.ts";
import * as ops from "../core/stp/ops.ts";
import { openRingEnd, recvStep, type RingEnd, type RingStep, sendStep } from "../core/stp/ring.ts";
import { doorbellOf, runSteps, type StpContext } from "../core/stp/steps.ts";
import { begin, failCall, type Handle, type Pump, storageAddress } from "./shm_pump.ts";

/** Runs a call that does not wait, turning a throw into a rejection. */
function settle<T>(call: () => T): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Largest number of ring steps one send or recv takes (each moves bytes or waits). */
const RING_STEPS_MAX = 1_000_000_000;

/**
 * Builds the storage socket methods over a table, a context source and a pump.
 *
 * @param table the storage descriptor table
 * @param ctx returns the caller context (region, host, clock) for a core call
 * @param pump the waiter
 * @param leaseHeld ok while this host holds its slot: no block is allocated (by `socket` or
 *   `accept`) after the lease was lost, since its owner bits would name another host
 * @returns the methods of the unified API for storage descriptors
 */
export function storageSockets(
  table: SocketTable<Handle>,
  ctx: () => StpContext,
  pump: Pump,
  leaseHeld: () => Result<void>,
): Sockets {
  let hint = 0;
  const ring = (fd: number, call: "send" | "recv", end: RingEnd | undefined): RingEnd => {
    if (end === undefined) return failCall(table, fd, call, "ENOTCONN", "no ring on this socket");
    return end;
  };
  return {
    socket: (kind: SocketKind) =>
      settle(() => {
        if (kind !== "storage") {
          throw new SocketError("EAFNOSUPPORT", `storage sockets cannot be ${kind}`);
        }
        unwrap(leaseHeld(), { call: "socket" });
        const block = unwrap(runSteps(ops.allocate(ctx(), hint++)), { call: "socket" });
        const fd = table.open({ ref: block });
        if (!fd.ok) runSteps(ops.close(ctx(), block));
        return unwrap(fd, { call: "socket" });
      }),
    bind: (fd: number, address: Address) =>
      settle(() => {
        const checked = unwrap(checkAddress(address, "storage"), { call: "bind", fd });
        const entry = begin(table, fd, "bind");
        if (checked.kind !== "storage") {
          throw new SocketError("EAFNOSUPPORT", "not a storage address");
        }
        const port = runSteps(ops.bind(ctx(), entry.handle.ref, checked.stg, checked.port));
        if (!port.ok) failCall(table, fd, "bind", port.code, port.message);
        const local = storageAddress({ stg: checked.stg, port: port.value });
        table.complete(fd, "bind", { type: "bound", local });
      }),
    listen: (fd: number, backlog: number) =>
      settle(() => {
        const entry = begin(table, fd, "listen");
        const used = runSteps(ops.listen(ctx(), entry.handle.ref, backlog));
        if (!used.ok) failCall(table, fd, "listen", used.code, used.message);
        table.complete(fd, "listen", { type: "listening", backlog: used.value });
      }),
    getsockname: (fd: number) =>
      settle(() => {
        const entry = begin(table, fd, "getsockname");
        const local = localAddressOf(entry.state);
        table.complete(fd, "getsockname", { type: "done" });
        if (local === undefined) throw new SocketError("EINVAL", "socket has no address", { fd });
        return local;
      }),
    accept: (fd) => acceptOn(table, ctx, pump, fd, leaseHeld),
    connect: (fd, address) => connectTo(table, ctx, pump, fd, address),
    async send(fd: number, bytes: Uint8Array) {
      const end = ring(fd, "send", begin(table, fd, "send").handle.end);
      let sent = 0;
      let deadlineMs = Date.now() + pump.layout.ioTimeoutMs;
      for (let steps = 0; steps < RING_STEPS_MAX && sent < bytes.length; steps++) {
        const step: RingStep = sendStep(ctx(), end, bytes.subarray(sent));
        if (step.kind === "moved") {
          sent += step.bytes;
          deadlineMs = Date.now() + pump.layout.ioTimeoutMs;
        } else if (step.kind === "failed") {
          failCall(table, fd, "send", step.code, step.message);
        } else if (step.kind === "waiting" && !(await pump.wait(step.wait, deadlineMs))) {
          failCall(
            table,
            fd,
            "send",
            "ETIMEDOUT",
            `send waited ${pump.layout.ioTimeoutMs} ms for ring space`,
          );
        }
      }
      table.complete(fd, "send", { type: "done" });
    },
    async recv(fd: number, into: Uint8Array) {
      const end = ring(fd, "recv", begin(table, fd, "recv").handle.end);
      const deadlineMs = Date.now() + pump.layout.ioTimeoutMs;
      for (let steps = 0; steps < RING_STEPS_MAX; steps++) {
        const step = recvStep(ctx(), end, into);
        if (step.kind === "moved") {
          table.complete(fd, "recv", { type: "done" });
          return step.bytes;
        }
        if (step.kind === "eof") {
          table.complete(fd, "recv", { type: "eof" });
          return null;
        }
        if (step.kind === "failed") failCall(table, fd, "recv", step.code, step.message);
        if (step.kind === "waiting" && !(await pump.wait(step.wait, deadlineMs))) break;
      }
      return failCall(table, fd, "recv", "ETIMEDOUT", `recv waited ${pump.layout.ioTimeoutMs} ms`);
    },
    async close(fd: number) {
      const entry = unwrap(table.close(fd), { call: "close", fd });
      if (entry.handle === undefined) return;
      const ref = entry.handle.ref;
      const closed = await pump.until(() => runSteps(ops.close(ctx(), ref)), "close");
      if (!closed.ok && closed.code !== "ETIMEDOUT") {
        throw toSocketError(closed, { call: "close", fd });
      }
    },
  };
}

/** An accepted connection with its ring opened and its addresses. */
interface AcceptedEnd {
  readonly block: ops.BlockRef;
  readonly end: RingEnd;
  readonly local: StorageAddress;
  readonly remote: StorageAddress;
}

/** `accept`: waits for a connector, pairs it, opens the new descriptor. */
async function acceptOn(
  table: SocketTable<Handle>,
  ctx: () => StpContext,
  pump: Pump,
  fd: number,
  leaseHeld: () => Result<void>,
): Promise<number> {
  const entry = begin(table, fd, "accept");
  const listener = entry.handle.ref;
  const accepted = await pump.until((): Result<ops.Poll<AcceptedEnd>> => {
    const held = leaseHeld();
    if (!held.ok) return held;
    const step = runSteps(ops.accept(ctx(), listener));
    if (!step.ok) return step;
    if (step.value.kind === "waiting") return ok(step.value);
    return openAccepted(ctx, listener, step.value.value);
  }, "accept");
  if (!accepted.ok) return failCall(table, fd, "accept", accepted.code, accepted.message);
  const { block, end, local, remote } = accepted.value;
  const opened = table.openConnected(local, remote, { ref: block, end });
  table.complete(fd, "accept", { type: "done" });
  if (!opened.ok) runSteps(ops.close(ctx(), block));
  return unwrap(opened, { call: "accept", fd });
}

/**
 * Opens the ring and the addresses of an accepted connection. One whose words cannot be read
 * back as a connection (a peer or ring that another process overwrote) is closed, and accept
 * goes on waiting for the next connector: the listener is not to blame.
 */
function openAccepted(
  ctx: () => StpContext,
  listener: ops.BlockRef,
  accepted: ops.Accepted,
): Result<ops.Poll<AcceptedEnd>> {
  const block = accepted.block;
  const end = openRingEnd(ctx(), block);
  const address = end.ok ? ops.blockAddress(ctx(), block) : end;
  if (!end.ok || !address.ok) {
    runSteps(ops.close(ctx(), block));
    // Poll again at once: a wait on a value the word does not hold returns without sleeping.
    const doorbell = doorbellOf(ctx(), listener.index);
    return ok({ kind: "waiting", wait: { index: doorbell.index, value: doorbell.value ^ 1 } });
  }
  const local = storageAddress(address.value);
  const remote = storageAddress({ stg: local.stg, port: accepted.remotePort });
  return ok({ kind: "ready", value: { block, end: end.value, local, remote } });
}

/** `connect`: queues on the listener, waits to be accepted, opens the rings. */
async function connectTo(
  table: SocketTable<Handle>,
  ctx: () => StpContext,
  pump: Pump,
  fd: number,
  address: Address,
): Promise<void> {
  const checked = unwrap(checkAddress(address, "storage"), { call: "connect", fd });
  const entry = begin(table, fd, "connect");
  const ref = entry.handle.ref;
  if (checked.kind !== "storage") {
    return failCall(table, fd, "connect", "EAFNOSUPPORT", "not storage");
  }
  const pending = runSteps(ops.connect(ctx(), ref, checked.stg, checked.port));
  if (!pending.ok) return failCall(table, fd, "connect", pending.code, pending.message);
  let port = await pump.until(
    () => runSteps(ops.pollConnected(ctx(), ref, pending.value)),
    "connect",
  );
  if (!port.ok && port.code === "ETIMEDOUT") {
    const cancelled = runSteps(ops.cancelConnect(ctx(), ref));
    if (cancelled === "connected") port = { ok: true, value: checked.port };
  }
  if (!port.ok) return failCall(table, fd, "connect", port.code, port.message);
  const end = openRingEnd(ctx(), ref);
  if (!end.ok) return failCall(table, fd, "connect", end.code, end.message);
  entry.handle.end = end.value;
  const own = ops.blockAddress(ctx(), ref);
  if (!own.ok) return failCall(table, fd, "connect", own.code, own.message);
  const local = storageAddress(own.value);
  table.complete(fd, "connect", { type: "connected", local, remote: checked });
}
