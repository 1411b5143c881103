/**
 * The byte ring of one direction of a connection: single producer, single consumer. The
 * producer's block holds `txTail` (bytes ever written), the consumer's block holds `rxHead`
 * (bytes ever read), both modulo 2^32 in Int32 words. Ring sizes are powers of two of at most
 * 2^28 bytes, so `(tail - head) >>> 0` is the byte count in the ring and `counter & (size - 1)`
 * the position, across any number of wraps of the counters: transfers of any length work.
 *
 * Publish order: the producer copies the bytes, then stores `txTail`, then rings its doorbell;
 * the consumer copies out, then stores `rxHead`, then rings its doorbell. A side that closes
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
  readonly peerStateIndex: number;
  readonly peerTxTailIndex: number;
  readonly peerRxHeadIndex: number;
  readonly peerDoorbellIndex: number;
  /** Bytes written so far (only this end writes `txTail`). */
  tail: number;
  /** Bytes read so far (only this end writes `rxHead`). */
  head: number;
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
    peerStateIndex: peers(F.state),
    peerTxTailIndex: peers(F.txTail),
    peerRxHeadIndex: peers(F.rxHead),
    peerDoorbellIndex: peers(F.doorbell),
    tail: loadField(ctx, ref.index, F.txTail),
    head: loadField(ctx, ref.index, F.rxHead),
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
function blocked(ctx: StpContext, end: RingEnd, peerWord: number, doorbell: number): RingStep {
  if (!hostAlive(ctx.memory, ctx.layout, ownerOf(peerWord), ctx.nowMs)) {
    return broken("ECONNRESET", `peer host ${ownerOf(peerWord)} lost its lease`);
  }
  return { kind: "waiting", wait: { index: end.peerDoorbellIndex, value: doorbell } };
}

/**
 * Writes as much of `bytes` into the tx ring as fits (`send`, one step).
 *
 * @returns moved (at least 1 byte), waiting (ring full), EPIPE (peer closed), ECONNRESET
 */
export function sendStep(ctx: StpContext, end: RingEnd, bytes: Uint8Array): RingStep {
  const memory = ctx.memory;
  const doorbell = memory.load(end.peerDoorbellIndex);
  const peerWord = memory.load(end.peerStateIndex);
  const failure = brokenConnection(ctx, end, peerWord);
  if (failure !== undefined) return failure;
  if (stateOf(peerWord) !== BlockState.connected && stateOf(peerWord) !== BlockState.pairing) {
    return broken("EPIPE", "the peer closed the connection");
  }
  const used = ringUsed(end.tail, memory.load(end.peerRxHeadIndex));
  if (used > end.ringBytes) return broken("EPROTO", `ring holds ${used} bytes, more than its size`);
  const count = Math.min(end.ringBytes - used, bytes.length);
  if (count === 0) return blocked(ctx, end, peerWord, doorbell);
  const [position, first] = ringSpans(end.tail, count, end.ringBytes);
  memory.writeBytes(end.txOffset + position, bytes.subarray(0, first));
  if (first < count) memory.writeBytes(end.txOffset, bytes.subarray(first, count));
  end.tail = (end.tail + count) | 0;
  memory.store(end.txTailIndex, end.tail);
  memory.add(end.doorbellIndex, 1);
  memory.notify(end.doorbellIndex);
  return { kind: "moved", bytes: count };
}

/**
 * Reads at most `into.length` bytes from the rx ring into `into` (`recv`, one step).
 *
 * @returns moved (at least 1 byte), eof (peer closed and ring drained), waiting, ECONNRESET
 */
export function recvStep(ctx: StpContext, end: RingEnd, into: Uint8Array): RingStep {
  const memory = ctx.memory;
  const doorbell = memory.load(end.peerDoorbellIndex);
  const peerWord = memory.load(end.peerStateIndex);
  const available = ringUsed(memory.load(end.peerTxTailIndex), end.head);
  if (available > end.ringBytes) {
    return broken("EPROTO", `ring holds ${available} bytes, more than its size`);
  }
  const count = Math.min(available, into.length);
  if (count > 0) {
    const [position, first] = ringSpans(end.head, count, end.ringBytes);
    memory.readBytes(end.rxOffset + position, into.subarray(0, first));
    if (first < count) memory.readBytes(end.rxOffset, into.subarray(first, count));
    end.head = (end.head + count) | 0;
    memory.store(end.rxHeadIndex, end.head);
    memory.add(end.doorbellIndex, 1);
    memory.notify(end.doorbellIndex);
    return { kind: "moved", bytes: count };
  }
  const failure = brokenConnection(ctx, end, peerWord);
  if (failure !== undefined) return failure;
  if (stateOf(peerWord) === BlockState.closed) return { kind: "eof" };
  if (into.length === 0) return { kind: "moved", bytes: 0 };
  return blocked(ctx, end, peerWord, doorbell);
}
