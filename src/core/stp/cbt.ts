/**
 * The control block table: allocating a block (`socket`), binding a port of an STG (`bind`,
 * explicit or dynamic), listening (`listen`), and returning a block and everything it holds to
 * the pool. Every decision is a compare-and-exchange on a state word or an owner word, so hosts
 * allocating at the same time never take the same block, port or extent.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { fail, ok, type Result } from "../dispatch/errors.ts";
import {
  BLOCK_STATE_NAMES,
  type BlockRef,
  BlockState,
  canMove,
  F,
  genOf,
  ownerOf,
  packState,
  stateOf,
  withOwner,
  withState,
} from "./block.ts";
import { blockWord, extentWord, portWord, S, stgById, type StgLayout, stgWord } from "./layout.ts";
import {
  casState,
  loadField,
  type Reclaimers,
  ringDoorbell,
  type Step,
  storeField,
  type StpContext,
} from "./steps.ts";
import { badWord, stateWordProblem } from "./trust.ts";

/** Fields cleared when a block returns to the pool (the state word is written last). */
export const CLEARED_FIELDS = [
  F.stgIndex,
  F.port,
  F.portHeld,
  F.peerIndex,
  F.peerGen,
  F.txExtent,
  F.rxExtent,
  F.backlog,
  F.ticket,
  F.targetIndex,
  F.targetGen,
  F.remotePort,
  F.txTail,
  F.rxHead,
] as const;

/**
 * The state word of a block this host owns, or ECONNRESET when it was reclaimed meanwhile
 * (this host lost its lease).
 */
export function ownWord(ctx: StpContext, ref: BlockRef): Result<number> {
  const word = loadField(ctx, ref.index, F.state);
  if (genOf(word) !== ref.gen || ownerOf(word) !== ctx.hostId) {
    return fail("ECONNRESET", `control block ${ref.index} was reclaimed (lease lost)`);
  }
  if (stateOf(word) === BlockState.reset) {
    return fail("ECONNRESET", `control block ${ref.index} was reset (lease lost)`);
  }
  const problem = stateWordProblem(word, ctx.layout.hostCount);
  if (problem !== undefined) {
    return badWord(ctx.layout, blockWord(ctx.layout, ref.index, F.state), word, problem);
  }
  return ok(word);
}

/**
 * Takes a free control block for this host (`socket`). Reclaims dead hosts' blocks once when
 * none is free.
 *
 * @param ctx the caller
 * @param hint the block to start the scan at (spreads hosts over the table)
 * @param reclaim the reclaimers (injected to keep the modules acyclic)
 * @returns the block, or ENOBUFS when every block is in use
 */
export function* allocateBlock(
  ctx: StpContext,
  hint: number,
  reclaim: Reclaimers,
): Step<Result<BlockRef>> {
  const count = ctx.layout.blockCount;
  for (let pass = 0; pass < 2; pass++) {
    for (let k = 0; k < count; k++) {
      const index = (((hint + k) % count) + count) % count;
      const word = loadField(ctx, index, F.state);
      if (stateOf(word) !== BlockState.free) continue;
      yield;
      const next = packState(BlockState.allocated, ctx.hostId, genOf(word) + 1);
      if (!casState(ctx, index, word, next)) continue;
      // Whatever a crashed releaser or a stray write left in a free block's fields is not kept.
      for (const field of CLEARED_FIELDS) storeField(ctx, index, field, 0);
      return ok({ index, gen: genOf(next) });
    }
    if (pass === 0 && (yield* reclaim.sweep(ctx)) === 0) break;
  }
  return fail("ENOBUFS", `no free control block (${count} in the table)`);
}

/**
 * The block a port table word names: none (0), a block of the region, or EPROTO for a word
 * that names no block or names a free block while both stay unchanged (a stale or stray value:
 * a releaser clears the port word before it frees the block, so this never happens honestly).
 */
export function portOccupant(
  ctx: StpContext,
  stg: StgLayout,
  port: number,
): Result<number | undefined> {
  const index = portWord(ctx.layout, stg.index, port);
  const word = ctx.memory.load(index);
  if (word === 0) return ok(undefined);
  const block = word - 1;
  if (block < 0 || block >= ctx.layout.blockCount) {
    return badWord(ctx.layout, index, word, `names no control block (1..${ctx.layout.blockCount})`);
  }
  const state = loadField(ctx, block, F.state);
  // Both words unchanged across the reads: the block was free while the word named it (a block
  // freed and then taken and bound again to this port meanwhile would show another state word).
  const stale = stateOf(state) === BlockState.free && ctx.memory.load(index) === word &&
    loadField(ctx, block, F.state) === state;
  if (stale) return badWord(ctx.layout, index, word, `names control block ${block}, which is free`);
  return ok(block);
}

/** Claims a port word for `block`; reclaims a dead occupant once. */
function* claimPort(
  ctx: StpContext,
  block: number,
  stg: StgLayout,
  port: number,
  reclaim: Reclaimers,
): Step<Result<number>> {
  const index = portWord(ctx.layout, stg.index, port);
  for (let attempt = 0; attempt < 2; attempt++) {
    const occupant = portOccupant(ctx, stg, port);
    if (!occupant.ok) return occupant;
    if (occupant.value === undefined) {
      yield;
      if (ctx.memory.compareExchange(index, 0, block + 1) === 0) return ok(port);
      continue;
    }
    if (attempt === 0 && (yield* reclaim.block(ctx, occupant.value))) continue;
    break;
  }
  return fail("EADDRINUSE", `stg ${stg.id} port ${port} is in use`);
}

/** Claims a free port from the STG's ephemeral range, starting at a rotating hint. */
function* claimDynamicPort(ctx: StpContext, block: number, stg: StgLayout): Step<Result<number>> {
  const span = stg.ephemeralMax - stg.ephemeralMin + 1;
  const start = (ctx.memory.add(stgWord(ctx.layout, stg.index, S.portHint), 1) >>> 0) % span;
  for (let k = 0; k < span; k++) {
    const port = stg.ephemeralMin + ((start + k) % span);
    const index = portWord(ctx.layout, stg.index, port);
    if (ctx.memory.load(index) !== 0) continue;
    yield;
    if (ctx.memory.compareExchange(index, 0, block + 1) === 0) return ok(port);
  }
  return fail(
    "EADDRNOTAVAIL",
    `no free port in stg ${stg.id} [${stg.ephemeralMin}, ${stg.ephemeralMax}]`,
  );
}

/**
 * Binds an allocated block to a port of an STG (`bind`); port 0 picks a dynamic port.
 *
 * @returns the port, or EADDRNOTAVAIL (unknown STG, no free dynamic port), EADDRINUSE (taken),
 *   EINVAL (block not in `allocated`), ECONNRESET (block reclaimed)
 */
export function* bindBlock(
  ctx: StpContext,
  ref: BlockRef,
  stgId: number,
  port: number,
  reclaim: Reclaimers,
): Step<Result<number>> {
  const word = ownWord(ctx, ref);
  if (!word.ok) return word;
  if (stateOf(word.value) !== BlockState.allocated) {
    return fail("EINVAL", `block is ${BLOCK_STATE_NAMES[stateOf(word.value)]}, not allocated`);
  }
  const stg = stgById(ctx.layout, stgId);
  if (stg === undefined) return fail("EADDRNOTAVAIL", `no STG with id ${stgId} in the region`);
  const claimed = port === 0
    ? yield* claimDynamicPort(ctx, ref.index, stg)
    : yield* claimPort(ctx, ref.index, stg, port, reclaim);
  if (!claimed.ok) return claimed;
  storeField(ctx, ref.index, F.stgIndex, stg.index);
  storeField(ctx, ref.index, F.port, claimed.value);
  storeField(ctx, ref.index, F.portHeld, 1);
  yield;
  if (!casState(ctx, ref.index, word.value, withState(word.value, BlockState.bound))) {
    ctx.memory.compareExchange(portWord(ctx.layout, stg.index, claimed.value), ref.index + 1, 0);
    storeField(ctx, ref.index, F.portHeld, 0);
    return fail("ECONNRESET", `control block ${ref.index} was reclaimed during bind`);
  }
  return claimed;
}

/**
 * Makes a bound block accept connections with a backlog of at most `backlogMax`.
 *
 * @returns the backlog used, or EINVAL (not bound), ECONNRESET (reclaimed)
 */
export function* listenBlock(
  ctx: StpContext,
  ref: BlockRef,
  backlog: number,
): Step<Result<number>> {
  const word = ownWord(ctx, ref);
  if (!word.ok) return word;
  if (stateOf(word.value) !== BlockState.bound) {
    return fail("EINVAL", "listen on a block not bound");
  }
  const used = Math.min(Math.max(1, Math.trunc(backlog)), ctx.layout.backlogMax);
  storeField(ctx, ref.index, F.backlog, used);
  storeField(ctx, ref.index, F.ticket, 0);
  yield;
  if (!casState(ctx, ref.index, word.value, withState(word.value, BlockState.listening))) {
    return fail("ECONNRESET", `control block ${ref.index} was reclaimed during listen`);
  }
  ringDoorbell(ctx, ref.index);
  return ok(used);
}

/** Frees the port and extents a block holds (idempotent: owner words are CAS'd). */
function releaseResources(ctx: StpContext, block: number): void {
  if (loadField(ctx, block, F.portHeld) === 1) {
    const stgIndex = loadField(ctx, block, F.stgIndex);
    const port = loadField(ctx, block, F.port);
    if (stgIndex >= 0 && stgIndex < ctx.layout.stgs.length && port > 0 && port <= 0xffff) {
      ctx.memory.compareExchange(portWord(ctx.layout, stgIndex, port), block + 1, 0);
    }
  }
  for (const field of [F.txExtent, F.rxExtent]) {
    const extent = loadField(ctx, block, field) - 1;
    if (extent >= 0 && extent < ctx.layout.extentCount) {
      ctx.memory.compareExchange(extentWord(ctx.layout, extent), block + 1, 0);
    }
  }
}

/**
 * Returns a block in `releasing` (taken by this host) to the pool with everything it holds.
 *
 * @param ctx the caller (the host in the block's owner bits)
 * @param block the block index
 * @param word the `releasing` state word this host wrote (its generation is kept)
 */
export function finishRelease(ctx: StpContext, block: number, word: number): void {
  invariant(stateOf(word) === BlockState.releasing, "only a releasing block is freed");
  releaseResources(ctx, block);
  for (const field of CLEARED_FIELDS) storeField(ctx, block, field, 0);
  storeField(ctx, block, F.state, packState(BlockState.free, 0, genOf(word)));
  ringDoorbell(ctx, block);
}

/** Moves a block from `word` to `releasing` (owned by this host) and frees it; false if raced. */
export function* releaseFrom(ctx: StpContext, block: number, word: number): Step<boolean> {
  if (!canMove(word, BlockState.releasing)) return false;
  yield;
  const releasing = withOwner(word, BlockState.releasing, ctx.hostId);
  if (!casState(ctx, block, word, releasing)) return false;
  finishRelease(ctx, block, releasing);
  return true;
}
