/**
 * The byte ring of one direction of a connection: single producer, single consumer. The
 * producer's block holds `txTail` (bytes ever written), the consumer's block holds `rxHead`
 * (bytes ever read), both modulo 2^32 in Int32 words. Ring sizes are powers of two of at most
 * 2^28 bytes, so `(tail - head) >>> 0` is the byte count in the ring and `counter & (size - 1)`
 * the position, across any number of wraps of the counters: transfers of any length work.
 *
 * Publish order: the producer copies the bytes, then stores `txTail`, then rings its doorbell
 * (what a consumer waiting for data waits on); the consumer copies out, then stores `rxHead`,
 * then rings its space bell (what a producer waiting for space waits on). State changes ring
 * both. A side that closes
 * stores its state after its last `txTail`, so a consumer that reads the peer's state before its
 * tail never misses bytes sent before end-of-stream.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { fail, ok, type Result } from "../dispatch/errors.ts";
import { BlockState, stateOf } from "./block.ts";
import {
  blocked,
  type Broken,
  broken,
  counterFailure,
  endFailure,
  type RingEnd,
} from "./ring_end.ts";
import type { StpContext, WaitOn } from "./steps.ts";

export { openRingEnd, type RingEnd } from "./ring_end.ts";

/** Bytes in a ring. */
export const ringUsed = (tail: number, head: number): number => (tail - head) >>> 0;

/** Where `count` bytes starting at `counter` lie in a ring of `ringBytes`: two spans. */
export function ringSpans(counter: number, count: number, ringBytes: number): [number, number] {
  invariant(count <= ringBytes, "a span never exceeds the ring");
  const position = counter & (ringBytes - 1);
  const first = Math.min(count, ringBytes - position);
  return [position, first];
}

/** What one send or recv step did. */
export type RingStep =
  | { readonly kind: "moved"; readonly bytes: number }
  | { readonly kind: "eof" }
  | { readonly kind: "waiting"; readonly wait: WaitOn }
  | Broken;

/** Where a producer may write or a consumer may read in place: a contiguous span of the region. */
export interface RingSpan {
  readonly kind: "span";
  /** Byte offset of the span in the region. */
  readonly byteOffset: number;
  /** Its length in bytes (at least 1 unless 0 bytes were asked for). */
  readonly length: number;
}

/** What a reserve or peek step found. */
export type SpanStep = RingSpan | Exclude<RingStep, { kind: "moved" }>;

/**
 * Reserves free space of the tx ring for the producer to fill in place (zero-copy `send`): the
 * contiguous part of the free space at the tail, at most `maxBytes`. When the free space wraps
 * around the ring's end, only the part up to the end is returned; the next reserve, after a
 * commit, returns the rest. Nothing is published until {@link commitStep}. With `minBytes`, a
 * span shorter than that (and than `maxBytes` and the ring) that does not reach the ring's end
 * waits for the consumer to free more: the ring is nearly full, not at its end.
 *
 * @returns a span, waiting (ring full), EPIPE (peer closed), ECONNRESET, EPROTO
 */
export function reserveStep(
  ctx: StpContext,
  end: RingEnd,
  maxBytes: number,
  minBytes = 1,
): SpanStep {
  const memory = ctx.memory;
  const bell = memory.load(end.peerSpaceBellIndex);
  const peerWord = memory.load(end.peerStateIndex);
  const head = memory.load(end.peerRxHeadIndex);
  // Our own word is checked after every load of the peer's: if we are still connected now, the
  // pair was not released (nor the peer's block reused) while they were read.
  const failure = endFailure(ctx, end, peerWord, end.txExtentIndex);
  if (failure !== undefined) return failure;
  const state = stateOf(peerWord);
  if (state === BlockState.reset) {
    return broken("ECONNRESET", "the peer's control block was reset or reclaimed");
  }
  if (state !== BlockState.connected && state !== BlockState.pairing) {
    return broken("EPIPE", "the peer closed the connection");
  }
  const bad = counterFailure(ctx, end, "head", head);
  if (bad !== undefined) return bad;
  end.peerHead = head;
  const used = ringUsed(end.tail, head);
  invariant(used <= end.ringBytes, "a checked rxHead leaves at most a ring in use");
  const count = Math.min(end.ringBytes - used, Math.max(0, Math.trunc(maxBytes)));
  const [position, first] = ringSpans(end.tail, count, end.ringBytes);
  const wanted = Math.min(Math.max(1, Math.trunc(minBytes)), Math.trunc(maxBytes), end.ringBytes);
  if ((count === 0 && maxBytes >= 1) || (first < wanted && position + first < end.ringBytes)) {
    return blocked(ctx, end, { index: end.peerSpaceBellIndex, value: bell });
  }
  end.reserved = first;
  return { kind: "span", byteOffset: end.txOffset + position, length: first };
}

/**
 * Publishes `bytes` of the span the last {@link reserveStep} returned: the consumer sees them
 * from now on. Committing 0 bytes gives the reservation up.
 *
 * @returns EINVAL when `bytes` is not a whole number within the reservation
 */
export function commitStep(ctx: StpContext, end: RingEnd, bytes: number): Result<number> {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > end.reserved) {
    return fail("EINVAL", `commit of ${bytes} bytes, but ${end.reserved} are reserved`);
  }
  end.reserved = 0;
  if (bytes === 0) return ok(0);
  end.tail = (end.tail + bytes) | 0;
  ctx.memory.store(end.txTailIndex, end.tail);
  ctx.memory.add(end.doorbellIndex, 1);
  ctx.memory.notify(end.doorbellIndex);
  return ok(bytes);
}

/**
 * Finds bytes waiting in the rx ring for the consumer to read in place (zero-copy `recv`): the
 * contiguous part at the head, at most `maxBytes`. Nothing is given back until
 * {@link releaseStep}.
 *
 * @returns a span, eof (peer closed and ring drained), waiting, ECONNRESET, EPROTO
 */
export function peekStep(ctx: StpContext, end: RingEnd, maxBytes: number): SpanStep {
  const memory = ctx.memory;
  // The peer's state before its tail: end-of-stream is reported only once the ring is drained.
  const doorbell = memory.load(end.peerDoorbellIndex);
  const peerWord = memory.load(end.peerStateIndex);
  const tail = memory.load(end.peerTxTailIndex);
  // Our own word is checked after every load of the peer's (see reserveStep).
  const failure = endFailure(ctx, end, peerWord, end.rxExtentIndex);
  if (failure !== undefined) return failure;
  const bad = counterFailure(ctx, end, "tail", tail);
  if (bad !== undefined) return bad;
  end.peerTail = tail;
  const available = ringUsed(tail, end.head);
  invariant(available <= end.ringBytes, "a checked txTail leaves at most a ring to read");
  const count = Math.min(available, Math.max(0, Math.trunc(maxBytes)));
  if (count > 0 || (maxBytes < 1 && available > 0)) {
    const [position, first] = ringSpans(end.head, count, end.ringBytes);
    end.peeked = first;
    return { kind: "span", byteOffset: end.rxOffset + position, length: first };
  }
  const state = stateOf(peerWord);
  if (state === BlockState.reset) {
    return broken("ECONNRESET", "the peer's control block was reset or reclaimed");
  }
  if (state === BlockState.closed) return { kind: "eof" };
  if (maxBytes < 1) {
    end.peeked = 0;
    return { kind: "span", byteOffset: end.rxOffset, length: 0 };
  }
  return blocked(ctx, end, { index: end.peerDoorbellIndex, value: doorbell });
}

/**
 * Gives `bytes` of the span the last {@link peekStep} returned back to the producer.
 *
 * @returns EINVAL when `bytes` is not a whole number within the peeked span
 */
export function releaseStep(ctx: StpContext, end: RingEnd, bytes: number): Result<number> {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > end.peeked) {
    return fail("EINVAL", `release of ${bytes} bytes, but ${end.peeked} were peeked`);
  }
  end.peeked = 0;
  if (bytes === 0) return ok(0);
  end.head = (end.head + bytes) | 0;
  ctx.memory.store(end.rxHeadIndex, end.head);
  ctx.memory.add(end.spaceBellIndex, 1);
  ctx.memory.notify(end.spaceBellIndex);
  return ok(bytes);
}

/**
 * Writes as much of `bytes` into the tx ring as fits (`send`, one step): reserve, copy, commit,
 * once more for the part after the ring's end when the free space wraps.
 *
 * @returns moved (at least 1 byte), waiting (ring full), EPIPE (peer closed), ECONNRESET
 */
export function sendStep(ctx: StpContext, end: RingEnd, bytes: Uint8Array): RingStep {
  let moved = 0;
  for (let span = 0; span < 2 && moved < bytes.length; span++) {
    const reserved = reserveStep(ctx, end, bytes.length - moved);
    if (reserved.kind !== "span") return moved > 0 ? { kind: "moved", bytes: moved } : reserved;
    ctx.memory.writeBytes(reserved.byteOffset, bytes.subarray(moved, moved + reserved.length));
    moved += unwrapCount(commitStep(ctx, end, reserved.length));
  }
  return { kind: "moved", bytes: moved };
}

/**
 * Reads at most `into.length` bytes from the rx ring into `into` (`recv`, one step): peek,
 * copy, release, once more for the part after the ring's end.
 *
 * @returns moved (at least 1 byte; 0 only for an empty `into`), eof (peer closed and ring
 *   drained), waiting, ECONNRESET
 */
export function recvStep(ctx: StpContext, end: RingEnd, into: Uint8Array): RingStep {
  let moved = 0;
  for (let span = 0; span < 2 && (moved < into.length || into.length === 0); span++) {
    const peeked = peekStep(ctx, end, into.length - moved);
    if (peeked.kind !== "span") return moved > 0 ? { kind: "moved", bytes: moved } : peeked;
    ctx.memory.readBytes(peeked.byteOffset, into.subarray(moved, moved + peeked.length));
    moved += unwrapCount(releaseStep(ctx, end, peeked.length));
    if (into.length === 0) break;
  }
  return { kind: "moved", bytes: moved };
}

/** The count of a commit or release the step itself sized (never out of range). */
function unwrapCount(result: Result<number>): number {
  invariant(result.ok, "a step commits or releases exactly what it reserved or peeked");
  return result.value;
}
