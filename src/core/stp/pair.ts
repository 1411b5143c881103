/**
 * Closing a connected block and returning a pair to the pool. A connected block that closes
 * goes to `closed` (its peer drains the ring, then sees end-of-stream); a dead host's connected
 * block goes to `reset` (its peer sees ECONNRESET). The pair is freed, with its two rings, once
 * both sides are `closed` or `reset`: whoever sees that first wins a compare-and-exchange on the
 * lower-indexed block of the pair (the arbiter) and frees both.
 *
 * @module
 */

import { BlockState, F, genOf, ownerOf, stateOf, withOwner, withState } from "./block.ts";
import { finishRelease, releaseFrom } from "./cbt.ts";
import { casState, loadField, ringDoorbell, type Step, type StpContext } from "./steps.ts";

const ENDED: ReadonlySet<number> = new Set([BlockState.closed, BlockState.reset]);
const PAIRED: ReadonlySet<number> = new Set([
  BlockState.pairing,
  BlockState.connected,
  BlockState.closed,
  BlockState.reset,
  BlockState.releasing,
]);

/**
 * The peer a block references, when it is still its peer: a block of the region (not the block
 * itself) whose generation is the one recorded and whose state a paired block can be in.
 * Otherwise the peer is gone: freed, reused (another generation), or named by a value that
 * cannot be (a peer index outside the table is no peer at all).
 *
 * @returns the peer's index and state word, or undefined when it is gone
 */
export function livePeer(
  ctx: StpContext,
  block: number,
): { readonly index: number; readonly word: number } | undefined {
  const index = loadField(ctx, block, F.peerIndex);
  if (index < 0 || index >= ctx.layout.blockCount || index === block) return undefined;
  const word = loadField(ctx, index, F.state);
  const paired = genOf(word) === loadField(ctx, block, F.peerGen) && PAIRED.has(stateOf(word));
  return paired ? { index, word } : undefined;
}

/** Whether the peer a block references is gone (see {@link livePeer}). */
export function peerGone(ctx: StpContext, block: number): boolean {
  return livePeer(ctx, block) === undefined;
}

/**
 * Frees a `closed`/`reset` block and its peer when both have ended, or the block alone when its
 * peer is gone.
 *
 * @returns how many blocks this call freed (0, 1 or 2)
 */
export function* tryReleasePair(ctx: StpContext, block: number): Step<number> {
  const word = loadField(ctx, block, F.state);
  if (!ENDED.has(stateOf(word))) return 0;
  const peer = livePeer(ctx, block);
  if (peer === undefined) return (yield* releaseFrom(ctx, block, word)) ? 1 : 0;
  if (!ENDED.has(stateOf(peer.word))) return 0;
  const [low, lowWord, high, highWord] = block < peer.index
    ? [block, word, peer.index, peer.word]
    : [peer.index, peer.word, block, word];
  yield;
  const lowReleasing = withOwner(lowWord, BlockState.releasing, ctx.hostId);
  if (!casState(ctx, low, lowWord, lowReleasing)) return 0;
  yield;
  // Nobody else moves `high` now: any other releaser must first win the arbiter.
  const highReleasing = withOwner(highWord, BlockState.releasing, ctx.hostId);
  const tookHigh = casState(ctx, high, highWord, highReleasing);
  finishRelease(ctx, low, lowReleasing);
  if (tookHigh) finishRelease(ctx, high, highReleasing);
  return tookHigh ? 2 : 1;
}

/**
 * Closes a connected block (`close`): `connected` -> `closed`, wakes the peer, then frees the pair
 * if the peer has ended too.
 *
 * @param ctx the caller (the block's owner)
 * @param block the block index
 * @param word the block's state word as the caller last read it
 * @returns false when the word changed meanwhile (reclaimed)
 */
export function* closeConnected(ctx: StpContext, block: number, word: number): Step<boolean> {
  yield;
  if (!casState(ctx, block, word, withState(word, BlockState.closed))) return false;
  ringDoorbell(ctx, block);
  yield* tryReleasePair(ctx, block);
  return true;
}

/**
 * Resets a dead host's connected block: `connected` -> `reset` (owner kept), wakes the peer, and
 * frees the pair when the peer has ended too.
 *
 * @returns true when this call reset it
 */
export function* resetConnected(ctx: StpContext, block: number, word: number): Step<boolean> {
  yield;
  if (!casState(ctx, block, word, withState(word, BlockState.reset))) return false;
  ringDoorbell(ctx, block);
  yield* tryReleasePair(ctx, block);
  return true;
}

/** The owner host of a block's current state word. */
export const ownerOfBlock = (ctx: StpContext, block: number): number =>
  ownerOf(loadField(ctx, block, F.state));
