/**
 * `close` of a control block in any state, and the reclaim of a dead host's blocks. Both end in
 * the same transitions, so a block a host closed and a block reclaimed from a dead host leave
 * the region in the same state.
 *
 * @module
 */

import { ok, type Result } from "../dispatch/errors.ts";
import { type BlockRef, BlockState, F, genOf, ownerOf, stateOf, withState } from "./block.ts";
import { finishRelease, ownWord, releaseFrom } from "./cbt.ts";
import type { Poll } from "./connect.ts";
import { freeDeadSlots, hostAliveNow } from "./hosts.ts";
import { closeConnected, resetConnected, tryReleasePair } from "./pair.ts";
import {
  casState,
  doorbellOf,
  loadField,
  type Reclaimers,
  ringDoorbell,
  type Step,
  type StpContext,
} from "./steps.ts";
import { withOwner } from "./block.ts";

/** Refuses every connector queued on a listener that stopped listening. */
function* refuseQueue(ctx: StpContext, listener: number, gen: number): Step<void> {
  for (let b = 0; b < ctx.layout.blockCount; b++) {
    const word = loadField(ctx, b, F.state);
    if (stateOf(word) !== BlockState.connecting) continue;
    if (loadField(ctx, b, F.targetIndex) !== listener) continue;
    if (loadField(ctx, b, F.targetGen) !== gen) continue;
    yield;
    if (casState(ctx, b, word, withState(word, BlockState.refused))) ringDoorbell(ctx, b);
  }
}

/** Stops a listener (`listening` -> `releasing`), refuses its queue and frees it. */
function* closeListener(ctx: StpContext, block: number, word: number): Step<boolean> {
  yield;
  const releasing = withOwner(word, BlockState.releasing, ctx.hostId);
  if (!casState(ctx, block, word, releasing)) return false;
  yield* refuseQueue(ctx, block, genOf(word));
  finishRelease(ctx, block, releasing);
  return true;
}

/** Largest number of re-reads of a state word while closing (each one follows a lost race). */
const CLOSE_ATTEMPTS_MAX = 8;

/**
 * Closes a block this host owns (`close`).
 *
 * @returns ready when done; waiting when an acceptor is pairing this connector right now (wait,
 *   then call again); ok as well when the block was already reclaimed (nothing left to do)
 */
export function* closeBlock(ctx: StpContext, ref: BlockRef): Step<Result<Poll<void>>> {
  const done = ok({ kind: "ready", value: undefined } as const);
  for (let attempt = 0; attempt < CLOSE_ATTEMPTS_MAX; attempt++) {
    const wait = doorbellOf(ctx, ref.index);
    const word = ownWord(ctx, ref);
    if (!word.ok) {
      yield* tryReleasePair(ctx, ref.index); // a reset block of ours: free the pair if we can
      return done;
    }
    const state = stateOf(word.value);
    if (state === BlockState.pairing) return ok({ kind: "waiting", wait });
    if (state === BlockState.closed) return done;
    const closed = state === BlockState.connected
      ? yield* closeConnected(ctx, ref.index, word.value)
      : state === BlockState.listening
      ? yield* closeListener(ctx, ref.index, word.value)
      : yield* releaseFrom(ctx, ref.index, word.value);
    if (closed) return done;
  }
  return ok({ kind: "waiting", wait: doorbellOf(ctx, ref.index) });
}

/** Whether the target listener of a pairing connector is gone (so the pairing will not end). */
function acceptorGone(ctx: StpContext, block: number): boolean {
  const target = loadField(ctx, block, F.targetIndex);
  if (target < 0 || target >= ctx.layout.blockCount) return true;
  const word = loadField(ctx, target, F.state);
  return genOf(word) !== loadField(ctx, block, F.targetGen) ||
    !hostAliveNow(ctx, ownerOf(word));
}

/**
 * Reclaims one block when its owner's lease has run out (or its pair was left behind).
 *
 * @param ctx the reclaiming host
 * @param block the block index
 * @param ownerDead treat the owner as dead whatever its heartbeat says (a claimer reclaiming
 *   the blocks its slot's previous incarnation left behind)
 * @returns true when the block was freed or reset
 */
export function* reclaimBlock(ctx: StpContext, block: number, ownerDead = false): Step<boolean> {
  if (block < 0 || block >= ctx.layout.blockCount) return false;
  const word = loadField(ctx, block, F.state);
  const state = stateOf(word);
  // A state outside the enum says nothing about who holds what: the block is left alone
  // (`region show` lists it) rather than freeing resources an honest host may still use.
  if (state === BlockState.free || state > BlockState.releasing) return false;
  // Both ends of a pair ended: nobody uses either any more, whoever owns them.
  if (state === BlockState.closed || state === BlockState.reset) {
    return (yield* tryReleasePair(ctx, block)) > 0;
  }
  if (!ownerDead && hostAliveNow(ctx, ownerOf(word))) return false;
  switch (state) {
    case BlockState.connected:
      return yield* resetConnected(ctx, block, word);
    case BlockState.listening:
      return yield* closeListener(ctx, block, word);
    case BlockState.pairing:
      return acceptorGone(ctx, block) && (yield* releaseFrom(ctx, block, word));
    case BlockState.releasing: {
      yield;
      const releasing = withOwner(word, BlockState.releasing, ctx.hostId);
      if (!casState(ctx, block, word, releasing)) return false;
      finishRelease(ctx, block, releasing);
      return true;
    }
    default:
      return yield* releaseFrom(ctx, block, word);
  }
}

/**
 * Sweeps the whole CBT, reclaiming every block of a dead host, then frees the slots of dead
 * hosts that hold nothing any more.
 *
 * @param ctx the reclaiming host
 * @returns how many blocks were freed or reset
 */
export function* sweepDeadHosts(ctx: StpContext): Step<number> {
  let reclaimed = 0;
  for (let b = 0; b < ctx.layout.blockCount; b++) {
    if (yield* reclaimBlock(ctx, b)) reclaimed++;
  }
  yield* freeDeadSlots(ctx);
  return reclaimed;
}

/**
 * Reclaims the blocks a previous incarnation of this host's slot left behind. Run right after
 * claiming the slot and before allocating anything: every block that names the slot as its owner
 * then belongs to the dead predecessor.
 *
 * @param ctx the host that just claimed its slot
 * @returns how many blocks were freed or reset
 */
export function* reclaimPredecessor(ctx: StpContext): Step<number> {
  let reclaimed = 0;
  for (let b = 0; b < ctx.layout.blockCount; b++) {
    if (ownerOf(loadField(ctx, b, F.state)) !== ctx.hostId) continue;
    if (yield* reclaimBlock(ctx, b, true)) reclaimed++;
  }
  return reclaimed;
}

/** The reclaimers the allocation paths use. */
export const RECLAIMERS: Reclaimers = { block: reclaimBlock, sweep: sweepDeadHosts };
