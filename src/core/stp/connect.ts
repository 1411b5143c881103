/**
 * Connecting and accepting. A connector binds (a dynamic port when unbound), takes a ticket from
 * the listener, publishes `connecting` with its target (listener index and generation) and
 * counts the connectors queued ahead of it: at `backlog` or more it withdraws (ECONNREFUSED).
 * The queue is therefore the set of `connecting` blocks targeting the listener, in ticket order,
 * stored in the CBT itself. `accept` claims the oldest connector (`connecting` -> `pairing`),
 * takes a fresh block and two extents of the listener's STG (one ring per direction), fills both
 * blocks and publishes `connected` on each.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";
import { type BlockRef, BlockState, F, genOf, ownerOf, stateOf, withState } from "./block.ts";
import { bindBlock, ownWord, portOccupant } from "./cbt.ts";
import { fenceFor, FenceReason, incarnationOf } from "./fence.ts";
import { extentWord, portWord, stgById, type StgLayout } from "./layout.ts";
import { hostAliveNow } from "./hosts.ts";
import {
  casState,
  doorbellOf,
  fieldIndex,
  loadField,
  type Reclaimers,
  ringDoorbell,
  type Step,
  storeField,
  type StpContext,
  type WaitOn,
} from "./steps.ts";
import { badWord, loadPort, loadStg } from "./trust.ts";

/** A connect in flight: the listener it is queued on. */
export interface PendingConnect {
  readonly listener: BlockRef;
}

/** What a poll of a connect or an accept found. */
export type Poll<T> = { readonly kind: "ready"; readonly value: T } | {
  readonly kind: "waiting";
  readonly wait: WaitOn;
};

const listenerOf = (ctx: StpContext, listener: BlockRef): number | undefined => {
  const word = loadField(ctx, listener.index, F.state);
  const live = stateOf(word) === BlockState.listening && genOf(word) === listener.gen &&
    hostAliveNow(ctx, ownerOf(word));
  return live ? word : undefined;
};

/** Why a listener found earlier no longer counts: closed (or its block reused), or a lapsed lease. */
function goneReason(ctx: StpContext, listener: BlockRef): string {
  const word = loadField(ctx, listener.index, F.state);
  if (stateOf(word) !== BlockState.listening || genOf(word) !== listener.gen) {
    return "the listener closed while the connect queued";
  }
  return `the listener's host ${ownerOf(word)} holds no lease (lapsed or fenced)`;
}

/** The owner of a listening block at (stg, port) whose host lease has lapsed, if any. */
function lapsedOwner(ctx: StpContext, stg: StgLayout, port: number): number | undefined {
  const occupant = portOccupant(ctx, stg, port);
  if (!occupant.ok || occupant.value === undefined) return undefined;
  const word = loadField(ctx, occupant.value, F.state);
  if (stateOf(word) !== BlockState.listening) return undefined;
  const owner = ownerOf(word);
  return hostAliveNow(ctx, owner) ? undefined : owner;
}

/** Takes a connector out of the queue (`connecting`/`refused` -> `bound`); false if it moved on. */
function* withdraw(ctx: StpContext, ref: BlockRef): Step<boolean> {
  const word = loadField(ctx, ref.index, F.state);
  const state = stateOf(word);
  if (state !== BlockState.connecting && state !== BlockState.refused) return false;
  yield;
  return casState(ctx, ref.index, word, withState(word, BlockState.bound));
}

/** How many connectors are queued on `listener` with a ticket before `ticket`. */
function queuedAhead(ctx: StpContext, listener: BlockRef, ticket: number, self: number): number {
  let ahead = 0;
  for (let b = 0; b < ctx.layout.blockCount; b++) {
    if (b === self || stateOf(loadField(ctx, b, F.state)) !== BlockState.connecting) continue;
    if (loadField(ctx, b, F.targetIndex) !== listener.index) continue;
    if (loadField(ctx, b, F.targetGen) !== listener.gen) continue;
    if (((loadField(ctx, b, F.ticket) - ticket) | 0) < 0) ahead++;
  }
  return ahead;
}

/**
 * The listener at (stg, port), if a live one listens there. The port word names the block; a
 * listening block it names must hold that very port, unless the word changed meanwhile (the
 * listener closed and its block was reused: nobody listens there now).
 *
 * @returns the listener, undefined when nobody listens, EPROTO for a port word that names no
 *   block, a free block, or a listener holding another port
 */
function listenerAt(
  ctx: StpContext,
  stg: StgLayout,
  port: number,
): Result<BlockRef | undefined> {
  const occupant = portOccupant(ctx, stg, port);
  if (!occupant.ok) return occupant;
  const index = occupant.value;
  if (index === undefined) return ok(undefined);
  const word = loadField(ctx, index, F.state);
  const listener = { index, gen: genOf(word) };
  if (listenerOf(ctx, listener) === undefined) return ok(undefined);
  const holds = loadField(ctx, index, F.portHeld) === 1 &&
    loadField(ctx, index, F.stgIndex) === stg.index && loadField(ctx, index, F.port) === port;
  if (holds) return ok(listener);
  const portIndex = portWord(ctx.layout, stg.index, port);
  const unchanged = ctx.memory.load(portIndex) === index + 1 &&
    loadField(ctx, index, F.state) === word;
  if (!unchanged) return ok(undefined);
  return badWord(
    ctx.layout,
    portIndex,
    index + 1,
    `names listener ${index}, which holds another port`,
  );
}

/**
 * The listener's backlog: 0 when it stopped listening meanwhile (its block may already be reused,
 * its fields cleared), EPROTO (its owner fenced) for one outside 1..backlogMax read while the
 * listener stayed the same.
 */
function backlogOf(ctx: StpContext, listener: BlockRef): Result<number> {
  const word = loadField(ctx, listener.index, F.state);
  const backlog = loadField(ctx, listener.index, F.backlog);
  if (backlog >= 1 && backlog <= ctx.layout.backlogMax) return ok(backlog);
  const same = loadField(ctx, listener.index, F.state) === word &&
    stateOf(word) === BlockState.listening && genOf(word) === listener.gen;
  if (!same) return ok(0);
  const owner = ownerOf(word);
  return fenceFor(ctx, {
    suspect: { hostId: owner, incarnation: incarnationOf(ctx.memory, ctx.layout, owner) },
    reason: FenceReason.backlog,
    word: fieldIndex(ctx, listener.index, F.backlog),
    value: backlog,
    why: `not a backlog (1..${ctx.layout.backlogMax})`,
  });
}

/**
 * Queues a block on the listener at (stg, port) (`connect`, first half).
 *
 * @returns the pending connect, or ECONNREFUSED (nobody listens, backlog full), EADDRNOTAVAIL
 *   (no dynamic port for the connector), EINVAL (bound in another STG), ECONNRESET (reclaimed),
 *   EPROTO (a port table word or the listener's backlog that cannot be)
 */
export function* startConnect(
  ctx: StpContext,
  ref: BlockRef,
  stgId: number,
  port: number,
  reclaim: Reclaimers,
): Step<Result<PendingConnect>> {
  const stg = stgById(ctx.layout, stgId);
  if (stg === undefined) return fail("ECONNREFUSED", `no STG with id ${stgId}`);
  let word = ownWord(ctx, ref);
  if (!word.ok) return word;
  if (stateOf(word.value) === BlockState.allocated) {
    const bound = yield* bindBlock(ctx, ref, stgId, 0, reclaim);
    if (!bound.ok) return bound;
    word = ownWord(ctx, ref);
    if (!word.ok) return word;
  }
  if (stateOf(word.value) !== BlockState.bound) return fail("EINVAL", "connect on a busy block");
  const own = loadStg(ctx, ref.index);
  if (!own.ok) return own;
  if (own.value.index !== stg.index) {
    return fail("EINVAL", `socket is bound in another STG than ${stgId}`);
  }
  const found = listenerAt(ctx, stg, port);
  if (!found.ok) return found;
  const listener = found.value;
  if (listener === undefined) {
    const lapsed = lapsedOwner(ctx, stg, port);
    const why = lapsed === undefined
      ? ""
      : ` (the listener's host ${lapsed} holds no lease: lapsed or fenced)`;
    return fail("ECONNREFUSED", `nobody listens on stg ${stgId} port ${port}${why}`);
  }
  const ticket = ctx.memory.add(fieldIndex(ctx, listener.index, F.ticket), 1);
  storeField(ctx, ref.index, F.targetIndex, listener.index);
  storeField(ctx, ref.index, F.targetGen, listener.gen);
  storeField(ctx, ref.index, F.ticket, ticket);
  yield;
  if (!casState(ctx, ref.index, word.value, withState(word.value, BlockState.connecting))) {
    return fail("ECONNRESET", `control block ${ref.index} was reclaimed during connect`);
  }
  const backlog = backlogOf(ctx, listener);
  const gone = backlog.ok && listenerOf(ctx, listener) === undefined;
  // The queue is scanned only for a live listener with a backlog, as before the reasons split.
  const ahead = !backlog.ok || gone ? 0 : queuedAhead(ctx, listener, ticket, ref.index);
  if (!backlog.ok || gone || ahead >= backlog.value) {
    yield* withdraw(ctx, ref);
    if (!backlog.ok) return backlog;
    const why = gone
      ? goneReason(ctx, listener)
      : `backlog full (${ahead} connect${
        ahead === 1 ? "" : "s"
      } queued ahead, backlog ${backlog.value})`;
    return fail("ECONNREFUSED", `stg ${stgId} port ${port} refused: ${why}`);
  }
  ringDoorbell(ctx, listener.index);
  return ok({ listener });
}

/**
 * Checks on a connect in flight (`connect`, second half).
 *
 * @returns ready with the listener's port once accepted, waiting (with the word to wait on),
 *   ECONNREFUSED when refused or the listener went away, ECONNRESET when reclaimed
 */
export function* pollConnect(
  ctx: StpContext,
  ref: BlockRef,
  pending: PendingConnect,
): Step<Result<Poll<number>>> {
  const wait = doorbellOf(ctx, ref.index);
  const word = ownWord(ctx, ref);
  if (!word.ok) return word;
  const state = stateOf(word.value);
  if (state === BlockState.connected) {
    const remotePort = loadPort(ctx, ref.index, F.remotePort);
    return remotePort.ok ? ok({ kind: "ready", value: remotePort.value }) : remotePort;
  }
  const listenerGone = listenerOf(ctx, pending.listener) === undefined;
  if (state === BlockState.refused || (state === BlockState.connecting && listenerGone)) {
    yield* withdraw(ctx, ref);
    return fail("ECONNREFUSED", "the listener refused the connection or went away");
  }
  if (state === BlockState.pairing && listenerGone) {
    const listenerWord = loadField(ctx, pending.listener.index, F.state);
    const acceptorDead = genOf(listenerWord) !== pending.listener.gen ||
      !hostAliveNow(ctx, ownerOf(listenerWord));
    yield;
    if (
      acceptorDead && casState(ctx, ref.index, word.value, withState(word.value, BlockState.bound))
    ) {
      return fail("ECONNREFUSED", "the accepting host died while pairing");
    }
  }
  return ok({ kind: "waiting", wait });
}

/**
 * Gives up a connect that timed out.
 *
 * @returns "cancelled" (back to bound), "connected" (accepted just in time: keep it), or
 *   "busy" (an acceptor is pairing it right now: poll again)
 */
export function* cancelConnect(
  ctx: StpContext,
  ref: BlockRef,
): Step<"cancelled" | "connected" | "busy"> {
  const state = stateOf(loadField(ctx, ref.index, F.state));
  if (state === BlockState.connected) return "connected";
  if (yield* withdraw(ctx, ref)) return "cancelled";
  const after = stateOf(loadField(ctx, ref.index, F.state));
  if (after === BlockState.connected) return "connected";
  return after === BlockState.pairing ? "busy" : "cancelled";
}

/** Finds the oldest connector queued on a listener, or -1. */
export function oldestConnector(ctx: StpContext, listener: BlockRef): number {
  let best = -1;
  let bestTicket = 0;
  for (let b = 0; b < ctx.layout.blockCount; b++) {
    if (stateOf(loadField(ctx, b, F.state)) !== BlockState.connecting) continue;
    if (loadField(ctx, b, F.targetIndex) !== listener.index) continue;
    if (loadField(ctx, b, F.targetGen) !== listener.gen) continue;
    const ticket = loadField(ctx, b, F.ticket);
    if (best < 0 || ((ticket - bestTicket) | 0) < 0) {
      best = b;
      bestTicket = ticket;
    }
  }
  return best;
}

/** Claims two free extents of an STG for block `owner`; undefined when fewer than two are free. */
export function* carveRings(
  ctx: StpContext,
  stgIndex: number,
  owner: number,
): Step<number[] | undefined> {
  const stg = ctx.layout.stgs[stgIndex];
  if (stg === undefined) return undefined;
  const taken: number[] = [];
  for (let e = stg.firstExtent; e < stg.firstExtent + stg.extentCount && taken.length < 2; e++) {
    if (ctx.memory.load(extentWord(ctx.layout, e)) !== 0) continue;
    yield;
    if (ctx.memory.compareExchange(extentWord(ctx.layout, e), 0, owner + 1) === 0) taken.push(e);
  }
  if (taken.length === 2) return taken;
  for (const e of taken) ctx.memory.compareExchange(extentWord(ctx.layout, e), owner + 1, 0);
  return undefined;
}
