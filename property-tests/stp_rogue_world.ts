/**
 * The simulated world of the rogue-host property: virtual time, honest hosts' memory checked on
 * every access, and a ledger of what each honest host holds. Runtime-agnostic (no Deno APIs,
 * no timers): time advances only when every honest host sleeps, as in a discrete-event
 * simulator, so the property never depends on the machine's speed.
 *
 * @module
 */

import type fc from "fast-check";
import { type BlockRef, F, genOf, ownerOf } from "../src/core/stp/block.ts";
import { blockWord, extentWord, type RegionLayout } from "../src/core/stp/layout.ts";
import type { RegionMemory } from "../src/core/stp/memory.ts";
import type { RingEnd } from "../src/core/stp/ring.ts";
import type { Step, WaitOn } from "../src/core/stp/steps.ts";

/** Largest number of yields one core operation may take in the simulation. */
const DRIVE_STEPS_MAX = 20_000;

/** A honest host asleep on a word until a notify or the end of its slice. */
interface Sleeper {
  readonly index: number;
  readonly wakeAtMs: number;
  readonly resolve: () => void;
}

/** A ring end a honest host opened, as the region showed it at that moment. */
interface OpenedRing {
  /** The host's own block. */
  readonly own: BlockRef;
  /** The two extents of the connection (tx, rx). */
  readonly extents: readonly number[];
  /** The block the extent table said holds them. */
  readonly holder: number;
  /** That block's state word without its state bits (owner and generation) then. */
  readonly holderIdentity: number;
}

/**
 * Virtual time, sleepers, the violations found and the log of what honest hosts did. One per
 * property run.
 */
export class World {
  /** The virtual clock, ms. */
  nowMs: number;
  /** What broke a rule (an empty list at the end of a run is the property). */
  readonly violations: string[] = [];
  /** One line per honest operation, for the failure report. */
  readonly log: string[] = [];
  readonly #rings = new Map<number, OpenedRing>();
  readonly #sleepers = new Set<Sleeper>();
  #running = 0;

  constructor(
    readonly scheduler: fc.Scheduler,
    readonly raw: RegionMemory,
    readonly layout: RegionLayout,
    startMs: number,
  ) {
    this.nowMs = startMs;
  }

  /** Counts a honest host as running until {@link World.finished}. */
  started(): void {
    this.#running++;
  }

  /** A honest host ended: time may now advance for the others. */
  finished(): void {
    this.#running--;
    this.#advanceIfAllAsleep();
  }

  /** Yields to the scheduler: another host, or the rogue, may act here. */
  async yieldPoint(label: string): Promise<void> {
    await this.scheduler.schedule(Promise.resolve(), label);
  }

  /**
   * Runs a core operation one yield at a time, each yield a scheduling point. An operation that
   * does not end within {@link DRIVE_STEPS_MAX} yields is a violation (a loop the rogue made
   * endless).
   */
  async drive<T>(label: string, step: Step<T>): Promise<T> {
    for (let count = 0; count < DRIVE_STEPS_MAX; count++) {
      const next = step.next();
      if (next.done === true) return next.value;
      await this.yieldPoint(label);
    }
    throw new Error(`${label} took more than ${DRIVE_STEPS_MAX} steps: an endless loop`);
  }

  /**
   * Sleeps where a core step said to wait: returns at once when the word already differs, else
   * when a honest notify on it comes or `sliceMs` of virtual time have passed.
   */
  async wait(label: string, on: WaitOn, sliceMs: number): Promise<void> {
    this.checkIndex(`${label} waits on`, on.index);
    await this.yieldPoint(label);
    if (this.raw.load(on.index) !== on.value) return;
    await new Promise<void>((resolve) => {
      this.#sleepers.add({ index: on.index, wakeAtMs: this.nowMs + sliceMs, resolve });
      this.#advanceIfAllAsleep();
    });
  }

  /** Sleeps `ms` of virtual time (no word to wait on). */
  async sleep(label: string, ms: number): Promise<void> {
    await this.yieldPoint(label);
    await new Promise<void>((resolve) => {
      this.#sleepers.add({ index: -1, wakeAtMs: this.nowMs + ms, resolve });
      this.#advanceIfAllAsleep();
    });
  }

  /** Wakes every honest sleeper on a word (a honest host's notify). */
  notify(index: number): void {
    for (const sleeper of this.#sleepers) {
      if (sleeper.index !== index) continue;
      this.#sleepers.delete(sleeper);
      sleeper.resolve();
    }
  }

  #advanceIfAllAsleep(): void {
    if (this.#running === 0 || this.#sleepers.size < this.#running) return;
    const next = Math.min(...[...this.#sleepers].map((s) => s.wakeAtMs));
    this.nowMs = Math.max(this.nowMs, next);
    for (const sleeper of this.#sleepers) {
      if (sleeper.wakeAtMs > this.nowMs) continue;
      this.#sleepers.delete(sleeper);
      sleeper.resolve();
    }
  }

  /** Records a violation when a word index lies outside the region. */
  checkIndex(what: string, index: number): boolean {
    const words = this.raw.byteLength >>> 2;
    if (Number.isInteger(index) && index >= 0 && index < words) return true;
    this.violations.push(`${what} word ${index}: outside the region's ${words} words`);
    return false;
  }

  /** Whether a block's word names `hostId` with the generation of `ref`. */
  names(ref: BlockRef, hostId: number): boolean {
    const word = this.raw.load(blockWord(this.layout, ref.index, F.state));
    return ownerOf(word) === hostId && genOf(word) === ref.gen;
  }

  /**
   * Records the ring end a honest host just opened, checking it against the region: both
   * extents held by one block, which is the host's own block or the end's peer, and the host's
   * own block naming it.
   */
  opened(hostId: number, own: BlockRef, end: RingEnd): void {
    const { layout, raw } = this;
    const extentAt = (offset: number) =>
      Math.floor((offset - layout.deviceOffset) / layout.extentBytes);
    const extents = [extentAt(end.txOffset), extentAt(end.rxOffset)];
    const holders = extents.map((e) => raw.load(extentWord(layout, e)) - 1);
    const holder = holders[0]!;
    const fine = extents.every((e) => e >= 0 && e < layout.extentCount) &&
      holders[1] === holder && (holder === own.index || holder === end.peer.index) &&
      this.names(own, hostId);
    if (!fine) {
      this.violations.push(
        `host ${hostId} opened a ring on extents ${extents} held by ${holders}, not by its own ` +
          `block ${own.index} or its peer ${end.peer.index}`,
      );
      return;
    }
    const holderIdentity = raw.load(blockWord(layout, holder, F.state)) & ~0xf;
    this.#rings.set(hostId, { own, extents, holder, holderIdentity });
  }

  /**
   * Checks that a honest host touches only ring bytes of the ring end it opened: one of its two
   * extents, still held (per the extent table, now) by the same block under the same owner and
   * generation as at open, with the host's own block still naming it.
   */
  checkRingAccess(hostId: number, what: string, byteOffset: number, length: number): boolean {
    const { layout, raw } = this;
    const relative = byteOffset - layout.deviceOffset;
    const extent = Math.floor(relative / layout.extentBytes);
    const inOneExtent = relative >= 0 && length >= 0 && extent < layout.extentCount &&
      relative + length <= (extent + 1) * layout.extentBytes;
    if (!inOneExtent) {
      this.violations.push(
        `host ${hostId} ${what} bytes [${byteOffset}, ${byteOffset + length}): not inside one ` +
          "extent of the device area",
      );
      return false;
    }
    if (length === 0) return true;
    const ring = this.#rings.get(hostId);
    const holder = raw.load(extentWord(layout, extent)) - 1;
    const identity = holder >= 0 && holder < layout.blockCount
      ? raw.load(blockWord(layout, holder, F.state)) & ~0xf
      : undefined;
    const ok = ring !== undefined && ring.extents.includes(extent) && holder === ring.holder &&
      identity === ring.holderIdentity && this.names(ring.own, hostId);
    if (!ok) {
      this.violations.push(
        `host ${hostId} ${what} ${length} bytes of extent ${extent} (now held by block ` +
          `${holder}), not the ring it opened (${JSON.stringify(ring)}) or no longer its own`,
      );
    }
    return ok;
  }
}

/**
 * A honest host's view of the region: every access checked against the region's bounds (and
 * byte accesses against the host's own rings), notifies waking the world's sleepers. An access
 * out of bounds is recorded and throws, as an out-of-bounds Atomics access would.
 *
 * @param world the simulation
 * @param hostId the honest host
 * @returns its memory
 */
export function honestMemory(world: World, hostId: number): RegionMemory {
  const raw = world.raw;
  const word = (what: string, index: number) => {
    if (!world.checkIndex(`host ${hostId} ${what}`, index)) {
      throw new RangeError(`host ${hostId} ${what} word ${index} outside the region`);
    }
  };
  const bytes = (what: string, byteOffset: number, length: number) => {
    if (!world.checkRingAccess(hostId, what, byteOffset, length)) {
      throw new RangeError(`host ${hostId} ${what} bytes at ${byteOffset} outside its ring`);
    }
  };
  return {
    byteLength: raw.byteLength,
    load: (index) => (word("loads", index), raw.load(index)),
    store: (index, value) => (word("stores", index), raw.store(index, value)),
    compareExchange: (index, expected, replacement) => (
      word("compare-exchanges", index), raw.compareExchange(index, expected, replacement)
    ),
    add: (index, delta) => (word("adds to", index), raw.add(index, delta)),
    notify: (index) => {
      word("notifies", index);
      raw.notify(index);
      world.notify(index);
    },
    readBytes: (byteOffset, into) => {
      bytes("reads", byteOffset, into.length);
      raw.readBytes(byteOffset, into);
    },
    writeBytes: (byteOffset, from) => {
      bytes("writes", byteOffset, from.length);
      raw.writeBytes(byteOffset, from);
    },
  };
}
