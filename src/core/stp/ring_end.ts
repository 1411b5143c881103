/**
 * One end of a connection, as the adapter keeps it, and the checks every ring step makes before
 * it touches ring bytes. Opening an end reads the connected block, its peer and the rings from
 * the region once and checks each value (`trust.ts`); each step then only compares what it
 * loads with what the end recorded: our state word, the peer's owner and generation, the
 * extent table entry of the ring it uses, and the peer's counter against the last value seen.
 * A peer that breaks its records is fenced (`fence.ts`).
 *
 * @module
 */

import { fail, ok, type Result, type SocketErrorCode } from "../dispatch/errors.ts";
import { type BlockRef, BlockState, F, GEN_MODULUS, genOf, ownerOf, stateOf } from "./block.ts";
import { ownWord } from "./cbt.ts";
import { fenced, fenceFor, FenceReason, incarnationOf, type Suspect } from "./fence.ts";
import { beatAlive, peerHostFailure } from "./hosts.ts";
import { extentOffset, extentWord, HOST, hostWord } from "./layout.ts";
import { fieldIndex, loadField, type StpContext, type WaitOn } from "./steps.ts";
import { badWord, loadBlockIndex, loadExtent, loadStg, stateWordProblem } from "./trust.ts";

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
  /** Our state word while connected: any other value means the connection is broken. */
  readonly ownWord: number;
  /** The peer's state word without its state bits (owner and generation) at open. */
  readonly peerIdentity: number;
  /** The peer's host and the incarnation it had at open. */
  readonly peerHost: Suspect;
  /** The block both rings belong to (the accepted one): what their extent entries hold + 1. */
  readonly ringOwner: number;
  /** Extent table words of the tx and rx rings. */
  readonly txExtentIndex: number;
  readonly rxExtentIndex: number;
  /** Bytes written so far (only this end writes `txTail`). */
  tail: number;
  /** Bytes read so far (only this end writes `rxHead`). */
  head: number;
  /** The peer's `txTail` as last seen (it only moves forward, at most a ring ahead of `head`). */
  peerTail: number;
  /** The peer's `rxHead` as last seen (it only moves forward, never past `tail`). */
  peerHead: number;
  /** Bytes of the tx ring reserved by the last reserve and not yet committed. */
  reserved: number;
  /** Bytes of the rx ring peeked by the last peek and not yet released. */
  peeked: number;
}

/** A failure of a ring step. */
export interface Broken {
  readonly kind: "failed";
  readonly code: SocketErrorCode;
  readonly message: string;
}

/** A ring step's failure from a code and message (or a core failure). */
export const broken = (code: SocketErrorCode, message: string): Broken => ({
  kind: "failed",
  code,
  message,
});

/** The states a connected block's peer can be in. */
const PEER_STATES: ReadonlySet<number> = new Set([
  BlockState.connected,
  BlockState.closed,
  BlockState.reset,
]);

/** The peer of a connected block, checked: its index, generation, word, and that it names us. */
function checkedPeer(
  ctx: StpContext,
  ref: BlockRef,
): Result<{ readonly peer: BlockRef; readonly word: number }> {
  const index = loadBlockIndex(ctx, ref.index, F.peerIndex);
  if (!index.ok) return index;
  const gen = loadField(ctx, ref.index, F.peerGen);
  if (index.value === ref.index || gen < 0 || gen >= GEN_MODULUS) {
    const field = index.value === ref.index ? F.peerIndex : F.peerGen;
    const value = loadField(ctx, ref.index, field);
    return badWord(ctx.layout, fieldIndex(ctx, ref.index, field), value, "not a peer");
  }
  const word = loadField(ctx, index.value, F.state);
  const problem = stateWordProblem(word, ctx.layout.hostCount);
  if (problem !== undefined) {
    return badWord(ctx.layout, fieldIndex(ctx, index.value, F.state), word, problem);
  }
  const state = stateOf(word);
  if (genOf(word) !== gen || state === BlockState.free || state === BlockState.releasing) {
    return fail("ECONNRESET", "the peer's control block was reclaimed");
  }
  // A peer that closed or was reset may have left bytes to drain: the steps report it after.
  if (!PEER_STATES.has(state)) {
    return badWord(ctx.layout, fieldIndex(ctx, index.value, F.state), word, "not a peer's state");
  }
  const back = loadField(ctx, index.value, F.peerIndex);
  if (back !== ref.index || loadField(ctx, index.value, F.peerGen) !== ref.gen) {
    const why = `the peer of block ${ref.index} (generation ${ref.gen}) names another peer`;
    return badWord(ctx.layout, fieldIndex(ctx, index.value, F.peerIndex), back, why);
  }
  return ok({ peer: { index: index.value, gen }, word });
}

/** The rings of a pair, checked: extents of the block's STG, crossed with the peer's, owned. */
function checkedRings(
  ctx: StpContext,
  block: number,
  peer: number,
): Result<{ tx: number; rx: number; owner: number }> {
  const stg = loadStg(ctx, block);
  if (!stg.ok) return stg;
  const tx = loadExtent(ctx, block, F.txExtent, stg.value);
  if (!tx.ok) return tx;
  const rx = loadExtent(ctx, block, F.rxExtent, stg.value);
  if (!rx.ok) return rx;
  const peerRx = loadField(ctx, peer, F.rxExtent);
  const peerTx = loadField(ctx, peer, F.txExtent);
  if (tx.value === rx.value || peerRx !== tx.value + 1 || peerTx !== rx.value + 1) {
    const why = `rings do not cross: this block's are ${tx.value}/${rx.value}`;
    return badWord(ctx.layout, fieldIndex(ctx, peer, F.rxExtent), peerRx, why);
  }
  const owner = ctx.memory.load(extentWord(ctx.layout, tx.value)) - 1;
  const rxOwner = ctx.memory.load(extentWord(ctx.layout, rx.value)) - 1;
  if ((owner !== block && owner !== peer) || rxOwner !== owner) {
    const held = owner < 0 ? "free" : `held by block ${owner}`;
    const why = `${held}, not held by this pair (${block}, ${peer}) for both rings`;
    return badWord(ctx.layout, extentWord(ctx.layout, tx.value), owner + 1, why);
  }
  return ok({ tx: tx.value, rx: rx.value, owner });
}

/** The ring counters at open, checked: each side at most a ring ahead of the other. */
function checkedCounters(
  ctx: StpContext,
  block: number,
  peer: number,
): Result<{ tail: number; head: number; peerTail: number; peerHead: number }> {
  const ringBytes = ctx.layout.extentBytes;
  const tail = loadField(ctx, block, F.txTail);
  const head = loadField(ctx, block, F.rxHead);
  const peerTail = loadField(ctx, peer, F.txTail);
  const peerHead = loadField(ctx, peer, F.rxHead);
  if (((peerTail - head) >>> 0) > ringBytes) {
    const why = `more than a ring (${ringBytes}) ahead of rxHead ${head}`;
    return badWord(ctx.layout, fieldIndex(ctx, peer, F.txTail), peerTail, why);
  }
  if (((tail - peerHead) >>> 0) > ringBytes) {
    const why = `more than a ring (${ringBytes}) behind txTail ${tail}, or past it`;
    return badWord(ctx.layout, fieldIndex(ctx, peer, F.rxHead), peerHead, why);
  }
  return ok({ tail, head, peerTail, peerHead });
}

/**
 * Opens the ring end of a connected block, checking every word it reads: the peer names this
 * block back, the rings are two distinct extents of the block's STG held by the pair and crossed
 * with the peer's, and the counters are within a ring of each other.
 *
 * @returns the end, ENOTCONN when the block is not connected, ECONNRESET when it or its peer
 *   was reclaimed, EPROTO naming the first word that cannot be
 */
export function openRingEnd(ctx: StpContext, ref: BlockRef): Result<RingEnd> {
  const word = ownWord(ctx, ref);
  if (!word.ok) return word;
  if (stateOf(word.value) !== BlockState.connected) {
    return fail("ENOTCONN", "block is not connected");
  }
  const found = checkedPeer(ctx, ref);
  if (!found.ok) return found;
  const { peer } = found.value;
  const rings = checkedRings(ctx, ref.index, peer.index);
  if (!rings.ok) return rings;
  const counters = checkedCounters(ctx, ref.index, peer.index);
  if (!counters.ok) return counters;
  const own = (field: number) => fieldIndex(ctx, ref.index, field);
  const peers = (field: number) => fieldIndex(ctx, peer.index, field);
  const peerOwner = ownerOf(found.value.word);
  return ok({
    ref,
    peer,
    ringBytes: ctx.layout.extentBytes,
    txOffset: extentOffset(ctx.layout, rings.value.tx),
    rxOffset: extentOffset(ctx.layout, rings.value.rx),
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
    ownWord: word.value,
    peerIdentity: found.value.word & ~0xf,
    peerHost: {
      hostId: peerOwner,
      incarnation: incarnationOf(ctx.memory, ctx.layout, peerOwner),
    },
    ringOwner: rings.value.owner,
    txExtentIndex: extentWord(ctx.layout, rings.value.tx),
    rxExtentIndex: extentWord(ctx.layout, rings.value.rx),
    // Listed one by one (no spread): the ring steps read this object on every call.
    tail: counters.value.tail,
    head: counters.value.head,
    peerTail: counters.value.peerTail,
    peerHead: counters.value.peerHead,
    reserved: 0,
    peeked: 0,
  });
}

/**
 * Checks, before a step touches ring bytes: our block still holds exactly the word it had at
 * open, the peer's word still names its owner and generation with a valid state, and the
 * ring's extent entry still names the pair's block.
 *
 * @returns the failure, or undefined when the step may go on
 */
export function endFailure(
  ctx: StpContext,
  end: RingEnd,
  peerWord: number,
  extentIndex: number,
): Broken | undefined {
  const own = ctx.memory.load(end.stateIndex);
  if (own !== end.ownWord) return ownChanged(ctx, end, own);
  if ((peerWord & ~0xf) !== end.peerIdentity || stateOf(peerWord) > BlockState.releasing) {
    return peerChanged(ctx, end, peerWord);
  }
  const holder = ctx.memory.load(extentIndex);
  if (holder !== end.ringOwner + 1) {
    const why = `the ring is no longer held by this connection's block ${end.ringOwner}`;
    const failure = badWord(ctx.layout, extentIndex, holder, why);
    return broken(failure.code, failure.message);
  }
  return undefined;
}

function ownChanged(ctx: StpContext, end: RingEnd, own: number): Broken {
  if (genOf(own) !== end.ref.gen || ownerOf(own) !== ctx.hostId) {
    return broken("ECONNRESET", "our control block was reclaimed (lease lost)");
  }
  const problem = stateWordProblem(own, ctx.layout.hostCount);
  if (problem !== undefined) {
    const failure = badWord(ctx.layout, end.stateIndex, own, problem);
    return broken(failure.code, failure.message);
  }
  return broken("ECONNRESET", "our control block is no longer connected (reset or reclaimed)");
}

function peerChanged(ctx: StpContext, end: RingEnd, peerWord: number): Broken {
  const state = stateOf(peerWord);
  if (genOf(peerWord) !== end.peer.gen || state === BlockState.free) {
    return broken("ECONNRESET", "the peer's control block was reset or reclaimed");
  }
  const failure = fenceFor(ctx, {
    suspect: end.peerHost,
    reason: state > BlockState.releasing ? FenceReason.stateWord : FenceReason.owner,
    word: end.peerStateIndex,
    value: peerWord,
    why: state > BlockState.releasing
      ? `state ${state} is outside the enum`
      : `owner ${
        ownerOf(peerWord)
      } under generation ${end.peer.gen}, not host ${end.peerHost.hostId}`,
  });
  return broken(failure.code, failure.message);
}

/**
 * The step when nothing can move: a failure when the peer's host is gone (fenced, replaced,
 * lease run out, or a heartbeat that cannot be) or this host's own lease is, else where to wait.
 */
export function blocked(
  ctx: StpContext,
  end: RingEnd,
  wait: WaitOn,
): Broken | { readonly kind: "waiting"; readonly wait: WaitOn } {
  const peer = peerHostFailure(ctx, end.peerHost);
  if (peer !== undefined) return broken(peer.code, peer.message);
  const { memory, layout } = ctx;
  const beat = memory.load(hostWord(layout, ctx.hostId, HOST.heartbeat));
  if (!beatAlive(beat, ctx.nowMs, layout.leaseMs) || fenced(memory, layout, ctx.hostId)) {
    return broken("ECONNRESET", `this host (slot ${ctx.hostId}) lost its lease or was fenced`);
  }
  return { kind: "waiting", wait };
}

/**
 * Checks a counter the peer moved against the last value seen: it may only move forward, and
 * only as far as `limit` (for the peer's `rxHead`: our `txTail`; for its `txTail`: our `rxHead`
 * plus a ring). A counter that moves backwards or past that fences the peer.
 *
 * @returns the failure, or undefined for a counter in range
 */
export function counterFailure(
  ctx: StpContext,
  end: RingEnd,
  which: "tail" | "head",
  value: number,
): Broken | undefined {
  const last = which === "tail" ? end.peerTail : end.peerHead;
  const limit = which === "tail" ? end.head + end.ringBytes : end.tail;
  if (((value - last) >>> 0) <= ((limit - last) >>> 0)) return undefined;
  const failure = fenceFor(ctx, {
    suspect: end.peerHost,
    reason: which === "tail" ? FenceReason.ringTail : FenceReason.ringHead,
    word: which === "tail" ? end.peerTxTailIndex : end.peerRxHeadIndex,
    value,
    why: which === "tail"
      ? `moved backwards from ${last} or more than a ring past our rxHead ${end.head}`
      : `moved backwards from ${last} or past our txTail ${end.tail}`,
  });
  return broken(failure.code, failure.message);
}
