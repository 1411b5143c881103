/**
 * `accept`: pairs the oldest queued connector with a fresh block and carves one ring per
 * direction from the listener's STG.
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";
import { type BlockRef, BlockState, F, genOf, stateOf, withState } from "./block.ts";
import { allocateBlock, ownWord, releaseFrom } from "./cbt.ts";
import { carveRings, oldestConnector, type Poll } from "./connect.ts";
import { extentWord } from "./layout.ts";
import { tryReleasePair } from "./pair.ts";
import {
  casState,
  doorbellOf,
  loadField,
  type Reclaimers,
  ringDoorbell,
  type Step,
  storeField,
  type StpContext,
} from "./steps.ts";
import { loadPort, loadStg } from "./trust.ts";

/** An accepted connection: the new block and the connector's port. */
export interface Accepted {
  readonly block: BlockRef;
  readonly remotePort: number;
}

/** Largest number of connectors one accept step tries to claim before it waits. */
const CLAIM_ATTEMPTS_MAX = 16;

/** Fills one side of a pair: its peer, its rings, fresh ring counters, the remote port. */
function fillSide(
  ctx: StpContext,
  block: number,
  peer: BlockRef,
  rings: readonly [number, number],
  remotePort: number,
): void {
  storeField(ctx, block, F.peerIndex, peer.index);
  storeField(ctx, block, F.peerGen, peer.gen);
  storeField(ctx, block, F.txExtent, rings[0] + 1);
  storeField(ctx, block, F.rxExtent, rings[1] + 1);
  storeField(ctx, block, F.txTail, 0);
  storeField(ctx, block, F.rxHead, 0);
  storeField(ctx, block, F.remotePort, remotePort);
}

/** Refuses a claimed connector so it fails at once instead of timing out. */
function refuse(ctx: StpContext, connector: number, word: number): void {
  casState(ctx, connector, word, withState(word, BlockState.refused));
  ringDoorbell(ctx, connector);
}

/** Pairs a claimed connector (in `pairing`, word `claimed`) with a new block. */
function* pair(
  ctx: StpContext,
  listener: BlockRef,
  connector: number,
  claimed: number,
  remotePort: number,
  reclaim: Reclaimers,
): Step<Result<Accepted>> {
  const addresses = listenerAddress(ctx, listener, remotePort);
  if (!addresses.ok) {
    refuse(ctx, connector, claimed);
    return addresses;
  }
  const { stgIndex } = addresses.value;
  const block = yield* allocateBlock(ctx, connector + 1, reclaim);
  if (!block.ok) {
    refuse(ctx, connector, claimed);
    return block;
  }
  let rings = yield* carveRings(ctx, stgIndex, block.value.index);
  if (rings === undefined && (yield* reclaim.sweep(ctx)) > 0) {
    rings = yield* carveRings(ctx, stgIndex, block.value.index);
  }
  const own = ownWord(ctx, block.value);
  if (rings === undefined || !own.ok || stateOf(own.value) !== BlockState.allocated) {
    if (own.ok) yield* releaseFrom(ctx, block.value.index, own.value);
    for (const e of rings ?? []) {
      ctx.memory.compareExchange(extentWord(ctx.layout, e), block.value.index + 1, 0);
    }
    refuse(ctx, connector, claimed);
    if (rings === undefined) {
      return fail("ENOBUFS", `no ring space left in the STG of listener ${listener.index}`);
    }
    return own.ok ? fail("ECONNRESET", `block ${block.value.index} was taken while pairing`) : own;
  }
  return yield* publishPair(ctx, connector, claimed, {
    block: block.value,
    word: own.value,
    rings: rings as [number, number],
    addresses: addresses.value,
  });
}

/** Fills both blocks of a pair and publishes `connected` on each, ours first. */
function* publishPair(
  ctx: StpContext,
  connector: number,
  claimed: number,
  ours: {
    readonly block: BlockRef;
    readonly word: number;
    readonly rings: readonly [number, number];
    readonly addresses: PairAddresses;
  },
): Step<Result<Accepted>> {
  const { block, word, rings: [a, b] } = ours;
  const { stgIndex, listenerPort, remotePort } = ours.addresses;
  storeField(ctx, block.index, F.stgIndex, stgIndex);
  storeField(ctx, block.index, F.port, listenerPort);
  fillSide(ctx, block.index, { index: connector, gen: genOf(claimed) }, [a, b], remotePort);
  fillSide(ctx, connector, block, [b, a], listenerPort);
  yield;
  if (!casState(ctx, block.index, word, withState(word, BlockState.connected))) {
    refuse(ctx, connector, claimed);
    return fail("ECONNRESET", `block ${block.index} was taken while pairing`);
  }
  yield;
  if (!casState(ctx, connector, claimed, withState(claimed, BlockState.connected))) {
    // The connector gave up (its host judged ours dead). Undo our half.
    const now = loadField(ctx, block.index, F.state);
    if (stateOf(now) === BlockState.connected) {
      casState(ctx, block.index, now, withState(now, BlockState.closed));
    }
    yield* tryReleasePair(ctx, block.index);
    return fail("ECONNRESET", `connector ${connector} went away while pairing`);
  }
  ringDoorbell(ctx, connector);
  const held = ownWord(ctx, block);
  return held.ok ? ok({ block, remotePort }) : held;
}

/** Where a pair lives: the listener's STG and port, and the connector's port. */
interface PairAddresses {
  readonly stgIndex: number;
  readonly listenerPort: number;
  readonly remotePort: number;
}

/** The listener's STG and port, each checked before use, and the connector's port. */
function listenerAddress(
  ctx: StpContext,
  listener: BlockRef,
  remotePort: number,
): Result<PairAddresses> {
  const stg = loadStg(ctx, listener.index);
  if (!stg.ok) return stg;
  const listenerPort = loadPort(ctx, listener.index, F.port);
  if (!listenerPort.ok) return listenerPort;
  return ok({ stgIndex: stg.value.index, listenerPort: listenerPort.value, remotePort });
}

/**
 * One step of `accept` on a listening block: pairs the oldest queued connector, or says where to
 * wait for one.
 *
 * @returns ready with the new connected block, waiting, ENOBUFS (no free block or no ring space:
 *   the connector is refused), EINVAL (not listening), ECONNRESET (reclaimed)
 */
export function* acceptStep(
  ctx: StpContext,
  listener: BlockRef,
  reclaim: Reclaimers,
): Step<Result<Poll<Accepted>>> {
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS_MAX; attempt++) {
    const wait = doorbellOf(ctx, listener.index);
    const own = ownWord(ctx, listener);
    if (!own.ok) return own;
    if (stateOf(own.value) !== BlockState.listening) {
      return fail("EINVAL", "accept on a block not listening");
    }
    const connector = oldestConnector(ctx, listener);
    if (connector < 0) return ok({ kind: "waiting", wait });
    const word = loadField(ctx, connector, F.state);
    if (stateOf(word) !== BlockState.connecting) continue;
    yield;
    const claimed = withState(word, BlockState.pairing);
    if (!casState(ctx, connector, word, claimed)) continue;
    const stillOurs = loadField(ctx, connector, F.targetIndex) === listener.index &&
      loadField(ctx, connector, F.targetGen) === listener.gen;
    if (!stillOurs) {
      casState(ctx, connector, claimed, word);
      continue;
    }
    // A connector whose own port cannot be is refused; the listener goes on.
    const remotePort = loadPort(ctx, connector, F.port);
    if (!remotePort.ok) {
      refuse(ctx, connector, claimed);
      continue;
    }
    const accepted = yield* pair(ctx, listener, connector, claimed, remotePort.value, reclaim);
    if (!accepted.ok) return accepted;
    return ok({ kind: "ready", value: accepted.value });
  }
  return ok({ kind: "waiting", wait: doorbellOf(ctx, listener.index) });
}
