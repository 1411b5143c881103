/**
 * Zero-copy sends and receives on storage sockets: `reserve` hands out a writable view of free
 * ring space that the caller fills in place and `commit`s; `peek` hands out a readable view of
 * bytes waiting in the ring that the caller uses in place and `release`s. Ring wrap-around is
 * handled by returning the contiguous part; the next call returns the rest. A reserve holds the
 * descriptor's send side until its commit (another send meanwhile is EALREADY), a peek its
 * receive side until its release. The core steps are `reserveStep`/`commitStep` and
 * `peekStep`/`releaseStep`; `send` and `recv` are the same steps with a copy in between.
 *
 * @module
 */

import { SocketError } from "../core/dispatch/errors.ts";
import type { SocketTable } from "../core/dispatch/socket_table.ts";
import type { Region } from "../core/stp/region.ts";
import {
  commitStep,
  peekStep,
  releaseStep,
  reserveStep,
  type RingEnd,
  type RingSpan,
  type SpanStep,
} from "../core/stp/ring.ts";
import type { StpContext } from "../core/stp/steps.ts";
import { begin, failCall, type Handle, type Pump } from "./shm_pump.ts";

/** The zero-copy calls of storage sockets. */
export interface ZeroCopySockets {
  /**
   * Waits for free space in the send ring and returns a writable view of it: the contiguous
   * part, at least 1 and at most `maxBytes` bytes. Fill it, then {@link commit}. With
   * `minBytes`, a shorter span is returned only where it ends at the ring's end (else the call
   * waits for the consumer to free more).
   */
  reserve(fd: number, maxBytes?: number, minBytes?: number): Promise<Uint8Array>;
  /** Sends the first `bytes` of the reserved view (0 gives the reservation up). */
  commit(fd: number, bytes: number): void;
  /**
   * Waits for bytes in the receive ring and returns a readable view of them (the contiguous
   * part, at most `maxBytes`), or `null` at end of stream. Use it, then {@link release}.
   */
  peek(fd: number, maxBytes?: number): Promise<Uint8Array | null>;
  /** Gives the first `bytes` of the peeked view back to the sender's ring. */
  release(fd: number, bytes: number): void;
}

/** Largest number of waits one reserve or peek goes through (each bounded in time too). */
const WAITS_MAX = 100_000_000;

/** Waits until `step` gives a span or end of stream; ETIMEDOUT after the I/O timeout. */
async function span(
  table: SocketTable<Handle>,
  fd: number,
  call: "send" | "recv",
  pump: Pump,
  step: () => SpanStep,
): Promise<RingSpan | null> {
  const deadlineMs = Date.now() + pump.layout.ioTimeoutMs;
  for (let waits = 0; waits < WAITS_MAX; waits++) {
    const found = step();
    if (found.kind === "span") return found;
    if (found.kind === "eof") return null;
    if (found.kind === "failed") return failCall(table, fd, call, found.code, found.message);
    if (found.kind === "waiting" && !(await pump.wait(found.wait, deadlineMs))) break;
  }
  const what = call === "send" ? "reserve waited for ring space" : "peek waited for bytes";
  return failCall(table, fd, call, "ETIMEDOUT", `${what} ${pump.layout.ioTimeoutMs} ms`);
}

function ringOf(table: SocketTable<Handle>, fd: number, call: "send" | "recv"): RingEnd {
  const entry = begin(table, fd, call);
  const end = entry.handle.end;
  return end ?? failCall(table, fd, call, "ENOTCONN", "no ring on this socket");
}

function handleOf(table: SocketTable<Handle>, fd: number, what: string): Handle {
  const entry = table.lookup(fd);
  if (!entry.ok) throw new SocketError(entry.code, entry.message, { fd });
  if (entry.value.handle?.end === undefined) {
    throw new SocketError("EINVAL", `${what} on a descriptor without a ring`, { fd });
  }
  return entry.value.handle;
}

/**
 * Builds the zero-copy calls over a table, a context source, a pump and the region.
 *
 * @param table the storage descriptor table
 * @param ctx the caller context for a core call
 * @param pump the waiter
 * @param region the region (its `view`, when it has one, makes the calls copy-free)
 * @returns reserve, commit, peek and release
 */
export function zeroCopySockets(
  table: SocketTable<Handle>,
  ctx: () => StpContext,
  pump: Pump,
  region: Region,
): ZeroCopySockets {
  const viewOf = (at: RingSpan) =>
    region.view?.(at.byteOffset, at.length) ?? new Uint8Array(at.length);
  return {
    async reserve(fd, maxBytes = Number.MAX_SAFE_INTEGER, minBytes = 1) {
      if (!(maxBytes >= 1)) throw new SocketError("EINVAL", `reserve of ${maxBytes} bytes`, { fd });
      const end = ringOf(table, fd, "send");
      const step = () => reserveStep(ctx(), end, maxBytes, minBytes);
      const found = await span(table, fd, "send", pump, step);
      const at = found ?? failCall(table, fd, "send", "EPIPE", "no end of stream on a send ring");
      const view = viewOf(at);
      const handle = handleOf(table, fd, "reserve");
      handle.reserved = { view, byteOffset: at.byteOffset, copy: region.view === undefined };
      return view;
    },
    commit(fd, bytes) {
      const handle = handleOf(table, fd, "commit");
      const reserved = handle.reserved;
      if (reserved === undefined) {
        throw new SocketError("EINVAL", "commit without a reserve", { fd });
      }
      if (reserved.copy && bytes > 0 && bytes <= reserved.view.length) {
        region.memory.writeBytes(reserved.byteOffset, reserved.view.subarray(0, bytes));
      }
      const committed = commitStep(ctx(), handle.end!, bytes);
      if (!committed.ok) throw new SocketError(committed.code, committed.message, { fd });
      handle.reserved = undefined;
      table.complete(fd, "send", { type: "done" });
    },
    async peek(fd, maxBytes = Number.MAX_SAFE_INTEGER) {
      if (!(maxBytes >= 1)) throw new SocketError("EINVAL", `peek of ${maxBytes} bytes`, { fd });
      const end = ringOf(table, fd, "recv");
      const found = await span(table, fd, "recv", pump, () => peekStep(ctx(), end, maxBytes));
      if (found === null) {
        table.complete(fd, "recv", { type: "eof" });
        return null;
      }
      const view = viewOf(found);
      if (region.view === undefined) region.memory.readBytes(found.byteOffset, view);
      handleOf(table, fd, "peek").peeked = true;
      return view;
    },
    release(fd, bytes) {
      const handle = handleOf(table, fd, "release");
      if (handle.peeked !== true) throw new SocketError("EINVAL", "release without a peek", { fd });
      const released = releaseStep(ctx(), handle.end!, bytes);
      if (!released.ok) throw new SocketError(released.code, released.message, { fd });
      handle.peeked = false;
      table.complete(fd, "recv", { type: "done" });
    },
  };
}
