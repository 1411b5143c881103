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
 * Whether the peer a block references is gone: freed, reused (another generation), or in a
 * state a paired block cannot be in.
 */
export function peerGone(ctx: StpContext, block: number): boolean {
  const peer = loadField(ctx, block, F.peerIndex);
  if (peer < 0 || peer >= ctx.layout.blockCount) return true;
  const word = loadField(ctx, peer, F.state);
  return genOf(word) !== loadField(ctx, block, F.peerGen) || !PAIRED.has(stateOf(word));
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
  if (peerGone(ctx, block)) return (yield* releaseFrom(ctx, block, word)) ? 1 : 0;
  const peer = loadField(ctx, block, F.peerIndex);
  const peerWord = loadField(ctx, peer, F.state);
  if (!ENDED.has(stateOf(peerWord))) return 0;
  const [low, lowWord, high, highWord] = block < peer
    ? [block, word, peer, peerWord]
    : [peer, peerWord, block, word];
  yield;
  if (!casState(ctx, low, lowWord, withOwner(lowWord, BlockState.releasing, ctx.hostId))) return 0;
  yield;
  // Nobody else moves `high` now: any other releaser must first win the arbiter.
  const tookHigh = casState(
    ctx,
    high,
    highWord,
    withOwner(highWord, BlockState.releasing, ctx.hostId),
  );
  finishRelease(ctx, low);
  if (tookHigh) finishRelease(ctx, high);
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
