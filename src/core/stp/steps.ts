/**
 * Control operations of the core are generators that yield just before each compare-and-exchange
 * or publishing store. The adapter runs them straight through ({@link runSteps}); race tests
 * drive several of them one step at a time in an order `fc.scheduler` picks, so hosts interleave
 * at every point where another host could observe or change shared words.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { blockWord, type RegionLayout } from "./layout.ts";
import type { RegionMemory } from "./memory.ts";
import { F } from "./block.ts";

/** A control operation: yields at each shared-memory decision point, returns its outcome. */
export type Step<T> = Generator<void, T, void>;

/** Largest number of yields one operation may take (every loop in the core is bounded). */
export const STEPS_MAX = 1_000_000;

/** The caller of a core operation: which region, which host, what time it is. */
export interface StpContext {
  readonly memory: RegionMemory;
  readonly layout: RegionLayout;
  readonly hostId: number;
  readonly nowMs: number;
  /**
   * Reads the clock again, for a comparison against a word another host writes (a peer's
   * heartbeat): called after that word is loaded, so a caller that stalled (GC, a loaded
   * machine) between making this context and the comparison never sees a live peer's fresh
   * heartbeat as ahead of its clock. Absent: `nowMs` (a simulated or frozen clock).
   */
  readonly readClockMs?: () => number;
}

/**
 * Runs an operation to its end without interleaving.
 *
 * @param step the operation
 * @returns its outcome
 *
 * @example Running a generator to completion
 * ```ts
 * import { runSteps } from "./steps.ts";
 * function* twoSteps() { yield; yield; return 42; }
 * console.assert(runSteps(twoSteps()) === 42);
 * ```
 */
export function runSteps<T>(step: Step<T>): T {
  for (let count = 0; count <= STEPS_MAX; count++) {
    const next = step.next();
    if (next.done === true) return next.value;
  }
  invariant(false, `an operation took more than ${STEPS_MAX} steps`);
}

/** Where a blocked operation waits: a word and the value it had when the check was made. */
export interface WaitOn {
  readonly index: number;
  readonly value: number;
}

/** Word index of a block field. */
export const fieldIndex = (ctx: StpContext, block: number, field: number): number =>
  blockWord(ctx.layout, block, field);

/** Loads a block field. */
export const loadField = (ctx: StpContext, block: number, field: number): number =>
  ctx.memory.load(blockWord(ctx.layout, block, field));

/** Stores a block field. */
export const storeField = (ctx: StpContext, block: number, field: number, value: number): void =>
  ctx.memory.store(blockWord(ctx.layout, block, field), value);

/** Compare-and-exchange on a block's state word; true when it took. */
export function casState(ctx: StpContext, block: number, expected: number, next: number): boolean {
  const index = blockWord(ctx.layout, block, F.state);
  return ctx.memory.compareExchange(index, expected, next) === (expected | 0);
}

/**
 * Rings a block's doorbells after a state change or any other publish about it: bump both the
 * doorbell and the space bell and wake every waiter on either.
 */
export function ringDoorbell(ctx: StpContext, block: number): void {
  for (const field of [F.doorbell, F.spaceBell]) {
    const index = blockWord(ctx.layout, block, field);
    ctx.memory.add(index, 1);
    ctx.memory.notify(index);
  }
}

/** Where to wait for news about a block: its doorbell, as it is now. */
export function doorbellOf(ctx: StpContext, block: number): WaitOn {
  const index = blockWord(ctx.layout, block, F.doorbell);
  return { index, value: ctx.memory.load(index) };
}

/** Reclaim operations, injected into the operations that may need them. */
export interface Reclaimers {
  /** Reclaims one block if its owner is dead; true when something was freed. */
  readonly block: (ctx: StpContext, index: number) => Step<boolean>;
  /** Sweeps the whole table; returns how many blocks were freed or reset. */
  readonly sweep: (ctx: StpContext) => Step<number>;
}
