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
import { fail, ok, type Result, type SocketErrorCode } from "../dispatch/errors.ts";
import { type BlockRef, BlockState, F, genOf, ownerOf, stateOf } from "./block.ts";
import { hostAlive } from "./hosts.ts";
import { extentOffset } from "./layout.ts";
import { ownWord } from "./cbt.ts";
import { fieldIndex, loadField, type StpContext, type WaitOn } from "./steps.ts";

/** Bytes in a ring. */
export const ringUsed = (tail: number, head: number): number => (tail - head) >>> 0;

/** Where `count` bytes starting at `counter` lie in a ring of `ringBytes`: two spans. */
export function ringSpans(counter: number, count: number, ringBytes: number): [number, number] {
  invariant(count <= ringBytes, "a span never exceeds the ring");
  const position = counter & (ringBytes - 1);
  const first = Math.min(count, ringBytes - position);
  return [position, first];
}

/** One end of a connection, as the adapter keeps it: word indices and the local counters. */
export interface RingEnd {
  readonly ref: BlockRef;
  readonly peer: BlockRef;
  readonly ringBytes: number;
  readonly txOffset: number;
  readonly rxOffset: number;
  readonly stateIndex: number;
  readonly txTailIndex: number;
  readonly rxHeadIndex: number;
  readonly doorbellIndex: number;
  readonly spaceBellIndex: number;
  readonly peerStateIndex: number;
  readonly peerTxTailIndex: number;
  readonly peerRxHeadIndex: number;
  readonly peerDoorbellIndex: number;
  readonly peerSpaceBellIndex: number;
  /** Bytes written so far (only this end writes `txTail`). */
  tail: number;
  /** Bytes read so far (only this end writes `rxHead`). */
  head: number;
  /** Bytes of the tx ring reserved by the last reserve and not yet committed. */
  reserved: number;
  /** Bytes of the rx ring peeked by the last peek and not yet released. */
  peeked: number;
}

/**
 * Opens the ring end of a connected block.
 *
 * @returns the end, or ECONNRESET when the block is no longer this host's connected block
 */
export function openRingEnd(ctx: StpContext, ref: BlockRef): Result<RingEnd> {
  const word = ownWord(ctx, ref);
  if (!word.ok) return word;
  if (stateOf(word.value) !== BlockState.connected) {
    return fail("ENOTCONN", "block is not connected");
  }
  const peer = {
    index: loadField(ctx, ref.index, F.peerIndex),
    gen: loadField(ctx, ref.index, F.peerGen),
  };
  const tx = loadField(ctx, ref.index, F.txExtent) - 1;
  const rx = loadField(ctx, ref.index, F.rxExtent) - 1;
  invariant(tx >= 0 && tx < ctx.layout.extentCount, "a connected block has a tx ring");
  invariant(rx >= 0 && rx < ctx.layout.extentCount, "a connected block has an rx ring");
  const own = (field: number) => fieldIndex(ctx, ref.index, field);
  const peers = (field: number) => fieldIndex(ctx, peer.index, field);
  return ok({
    ref,
    peer,
    ringBytes: ctx.layout.extentBytes,
    txOffset: extentOffset(ctx.layout, tx),
    rxOffset: extentOffset(ctx.layout, rx),
    stateIndex: own(F.state),
    txTailIndex: own(F.txTail),
    rxHeadIndex: own(F.rxHead),
    doorbellIndex: own(F.doorbell),
    spaceBellIndex: own(F.spaceBell),
    peerStateIndex: peers(F.state),
    peerTxTailIndex: peers(F.txTail),
    peerRxHeadIndex: peers(F.rxHead),
    peerDoorbellIndex: peers(F.doorbell),
    peerSpaceBellIndex: peers(F.spaceBell),
    tail: loadField(ctx, ref.index, F.txTail),
    head: loadField(ctx, ref.index, F.rxHead),
    reserved: 0,
    peeked: 0,
  });
}

/** What one send or recv step did. */
export type RingStep =
  | { readonly kind: "moved"; readonly bytes: number }
  | { readonly kind: "eof" }
  | { readonly kind: "waiting"; readonly wait: WaitOn }
  | { readonly kind: "failed"; readonly code: SocketErrorCode; readonly message: string };

type Broken = Extract<RingStep, { kind: "failed" }>;
const broken = (code: SocketErrorCode, message: string): Broken => ({
  kind: "failed",
  code,
  message,
});

/** Checks our block and the peer's; a failure when the connection is broken. */
function brokenConnection(ctx: StpContext, end: RingEnd, peerWord: number): Broken | undefined {
  const own = ctx.memory.load(end.stateIndex);
  if (genOf(own) !== end.ref.gen || stateOf(own) !== BlockState.connected) {
    return broken("ECONNRESET", "our control block was reclaimed (lease lost)");
  }
  const state = stateOf(peerWord);
  if (genOf(peerWord) !== end.peer.gen || state === BlockState.reset || state === BlockState.free) {
    return broken("ECONNRESET", "the peer's control block was reset or reclaimed");
  }
  return undefined;
}

/** The step when nothing can move: a failure if the peer is dead, else where to wait. */
function blocked(
  ctx: StpContext,
  peerWord: number,
  wait: WaitOn,
): Extract<RingStep, { kind: "waiting" | "failed" }> {
  if (!hostAlive(ctx.memory, ctx.layout, ownerOf(peerWord), ctx.nowMs)) {
    return broken("ECONNRESET", `peer host ${ownerOf(peerWord)} lost its lease`);
  }
  return { kind: "waiting", wait };
}

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
 * commit, returns the rest. Nothing is published until {@link commitStep}.
 *
 * @returns a span, waiting (ring full), EPIPE (peer closed), ECONNRESET, EPROTO
 */
export function reserveStep(ctx: StpContext, end: RingEnd, maxBytes: number): SpanStep {
  const memory = ctx.memory;
  const bell = memory.load(end.peerSpaceBellIndex);
  const peerWord = memory.load(end.peerStateIndex);
  const failure = brokenConnection(ctx, end, peerWord);
  if (failure !== undefined) return failure;
  if (stateOf(peerWord) !== BlockState.connected && stateOf(peerWord) !== BlockState.pairing) {
    return broken("EPIPE", "the peer closed the connection");
  }
  const used = ringUsed(end.tail, memory.load(end.peerRxHeadIndex));
  if (used > end.ringBytes) return broken("EPROTO", `ring holds ${used} bytes, more than its size`);
  const count = Math.min(end.ringBytes - used, Math.max(0, Math.trunc(maxBytes)));
  if (count === 0 && maxBytes >= 1) {
    return blocked(ctx, peerWord, { index: end.peerSpaceBellIndex, value: bell });
  }
  const [position, first] = ringSpans(end.tail, count, end.ringBytes);
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
  const available = ringUsed(memory.load(end.peerTxTailIndex), end.head);
  if (available > end.ringBytes) {
    return broken("EPROTO", `ring holds ${available} bytes, more than its size`);
  }
  const count = Math.min(available, Math.max(0, Math.trunc(maxBytes)));
  if (count > 0 || (maxBytes < 1 && available > 0)) {
    const [position, first] = ringSpans(end.head, count, end.ringBytes);
    end.peeked = first;
    return { kind: "span", byteOffset: end.rxOffset + position, length: first };
  }
  const failure = brokenConnection(ctx, end, peerWord);
  if (failure !== undefined) return failure;
  if (stateOf(peerWord) === BlockState.closed) return { kind: "eof" };
  if (maxBytes < 1) {
    end.peeked = 0;
    return { kind: "span", byteOffset: end.rxOffset, length: 0 };
  }
  return blocked(ctx, peerWord, { index: end.peerDoorbellIndex, value: doorbell });
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
