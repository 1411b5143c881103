/**
 * The storage transport core in one place: every control operation with the reclaimers wired
 * in, the ring steps, the layout and region functions. Adapters import this module.
 *
 * @module
 */

import { ok, type Result } from "../dispatch/errors.ts";
import { F } from "./block.ts";
import { loadPort, loadStg } from "./trust.ts";
import { type Accepted, acceptStep } from "./accept.ts";
import type { BlockRef } from "./block.ts";
import { allocateBlock, bindBlock, listenBlock } from "./cbt.ts";
import {
  closeBlock,
  reclaimBlock,
  RECLAIMERS,
  reclaimPredecessor,
  sweepDeadHosts,
} from "./close.ts";
import { type PendingConnect, type Poll, pollConnect, startConnect } from "./connect.ts";
import type { Step, StpContext } from "./steps.ts";

export type { Accepted, BlockRef, PendingConnect, Poll };
export { cancelConnect } from "./connect.ts";
export { reclaimBlock, reclaimPredecessor, sweepDeadHosts };

/**
 * Allocates a control block (`socket`).
 *
 * @param ctx the caller
 * @param hint where to start scanning the CBT
 * @returns the block, or ENOBUFS
 *
 * @example Allocating a block in a fresh region
 * ```ts
 * import { allocate } from "./ops.ts";
 * import { formatRegion, attachRegion } from "./region.ts";
 * import { plainMemory } from "./memory.ts";
 * import { claimHost } from "./hosts.ts";
 * import { runSteps } from "./steps.ts";
 * const buffer = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 100, leaseMs: 100,
 *   backlogMax: 2,
 * }, crypto.randomUUID());
 * if (!buffer.ok) throw new Error(buffer.message);
 * const layout = attachRegion(buffer.value);
 * if (!layout.ok) throw new Error(layout.message);
 * const memory = plainMemory(buffer.value);
 * const claim = runSteps(claimHost(memory, layout.value, 1000, 0));
 * if (!claim.ok) throw new Error(claim.message);
 * const ctx = { memory, layout: layout.value, hostId: claim.value.hostId, nowMs: 1000 };
 * const block = runSteps(allocate(ctx, 0));
 * console.assert(block.ok && block.value.index === 0);
 * ```
 */
export function allocate(ctx: StpContext, hint: number): Step<Result<BlockRef>> {
  return allocateBlock(ctx, hint, RECLAIMERS);
}

/** Binds a block to (stg, port); port 0 picks a dynamic port. Returns the port. */
export function bind(
  ctx: StpContext,
  ref: BlockRef,
  stg: number,
  port: number,
): Step<Result<number>> {
  return bindBlock(ctx, ref, stg, port, RECLAIMERS);
}

/** Makes a bound block listen. Returns the backlog in effect. */
export function listen(ctx: StpContext, ref: BlockRef, backlog: number): Step<Result<number>> {
  return listenBlock(ctx, ref, backlog);
}

/** Queues a block on the listener at (stg, port). */
export function connect(
  ctx: StpContext,
  ref: BlockRef,
  stg: number,
  port: number,
): Step<Result<PendingConnect>> {
  return startConnect(ctx, ref, stg, port, RECLAIMERS);
}

/** Checks a connect in flight; ready with the listener's port once accepted. */
export function pollConnected(
  ctx: StpContext,
  ref: BlockRef,
  pending: PendingConnect,
): Step<Result<Poll<number>>> {
  return pollConnect(ctx, ref, pending);
}

/** One accept step on a listening block. */
export function accept(ctx: StpContext, listener: BlockRef): Step<Result<Poll<Accepted>>> {
  return acceptStep(ctx, listener, RECLAIMERS);
}

/** Closes a block; waiting while an acceptor pairs it. */
export function close(ctx: StpContext, ref: BlockRef): Step<Result<Poll<void>>> {
  return closeBlock(ctx, ref);
}

/**
 * The STG id and port a block holds or uses (its local storage address).
 *
 * @returns the address, or EPROTO when the block's STG index or port cannot be
 */
export function blockAddress(
  ctx: StpContext,
  ref: BlockRef,
): Result<{ stg: number; port: number }> {
  const stg = loadStg(ctx, ref.index);
  if (!stg.ok) return stg;
  const port = loadPort(ctx, ref.index, F.port);
  return port.ok ? ok({ stg: stg.value.id, port: port.value }) : port;
}
