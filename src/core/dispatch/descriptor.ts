/**
 * Descriptor spaces: the rule by which the *value* of a descriptor tells its kind.
 *
 * The rule (also in ARCHITECTURE.md):
 * - a descriptor is an integer in `[1, 2^31 - 1]`;
 * - **network** descriptors are `[NETWORK_FD_MIN, NETWORK_FD_MAX]` = `[3, 2^30 - 1]`
 *   (0, 1 and 2 are never handed out, as stdin/stdout/stderr are not sockets);
 * - **storage** descriptors are `[STORAGE_FD_MIN, STORAGE_FD_MAX]` = `[2^30, 2^31 - 1]`:
 *   bit 30 set means storage;
 * - anything else (0..2, negatives, non-integers, >= 2^31) is of no kind: EBADF.
 *
 * Reuse rule: each space hands out values in increasing order from its start. A value that was
 * closed is not handed out again until the space has wrapped around its end (2^30 allocations
 * later); on wrap-around, values still live are skipped. So a stale descriptor held after
 * `close` keeps failing with EBADF instead of silently naming a new socket.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { fail, ok, type Result } from "./errors.ts";

/** The two kinds of socket. */
export type SocketKind = "network" | "storage";

/** Lowest network descriptor. */
export const NETWORK_FD_MIN = 3;
/** Highest network descriptor. */
export const NETWORK_FD_MAX = 0x3fff_ffff;
/** Lowest storage descriptor (bit 30 set). */
export const STORAGE_FD_MIN = 0x4000_0000;
/** Highest storage descriptor. */
export const STORAGE_FD_MAX = 0x7fff_ffff;

/** The range of descriptor values a space hands out, inclusive on both ends. */
export interface DescriptorRange {
  /** The lowest value. */
  readonly min: number;
  /** The highest value. */
  readonly max: number;
}

/** The full range of each kind. */
export const DESCRIPTOR_RANGES: Readonly<Record<SocketKind, DescriptorRange>> = {
  network: { min: NETWORK_FD_MIN, max: NETWORK_FD_MAX },
  storage: { min: STORAGE_FD_MIN, max: STORAGE_FD_MAX },
};

/**
 * Tells the kind of a descriptor from its value alone (the dispatch rule).
 *
 * @param fd any value a caller passed as a descriptor
 * @returns the kind, or `undefined` when the value names no socket of either kind
 *
 * @example Routing by value
 * ```ts
 * import { kindOfDescriptor, STORAGE_FD_MIN } from "./descriptor.ts";
 * console.assert(kindOfDescriptor(3) === "network");
 * console.assert(kindOfDescriptor(STORAGE_FD_MIN + 7) === "storage");
 * console.assert(kindOfDescriptor(2) === undefined);
 * ```
 */
export function kindOfDescriptor(fd: number): SocketKind | undefined {
  if (!Number.isInteger(fd)) return undefined;
  if (fd >= NETWORK_FD_MIN && fd <= NETWORK_FD_MAX) return "network";
  if (fd >= STORAGE_FD_MIN && fd <= STORAGE_FD_MAX) return "storage";
  return undefined;
}

/**
 * Hands out descriptor values of one kind following the reuse rule in the module doc.
 * Pure bookkeeping: no I/O. `liveMax` bounds how many descriptors may be open at once.
 */
export class DescriptorSpace {
  /** The kind every value of this space routes to. */
  readonly kind: SocketKind;
  /** The values it hands out. */
  readonly range: DescriptorRange;
  /** How many values may be live at once (ENOBUFS beyond). */
  readonly liveMax: number;
  #next: number;
  readonly #live = new Set<number>();

  /**
   * Makes an empty space.
   *
   * @param kind the kind every value of this space routes to
   * @param options `liveMax` (default 65536) and, for tests, a narrower `range` inside the
   *   kind's full range (so wrap-around can be exercised)
   */
  constructor(kind: SocketKind, options: { liveMax?: number; range?: DescriptorRange } = {}) {
    const full = DESCRIPTOR_RANGES[kind];
    const range = options.range ?? full;
    if (
      !Number.isInteger(range.min) || !Number.isInteger(range.max) || range.min > range.max ||
      range.min < full.min || range.max > full.max
    ) {
      throw new RangeError(
        `descriptor range [${range.min}, ${range.max}] is not inside the ${kind} range ` +
          `[${full.min}, ${full.max}]`,
      );
    }
    const liveMax = options.liveMax ?? 65536;
    if (!Number.isInteger(liveMax) || liveMax < 1) {
      throw new RangeError(`liveMax must be a positive integer, got ${liveMax}`);
    }
    this.kind = kind;
    this.range = range;
    this.liveMax = Math.min(liveMax, range.max - range.min + 1);
    this.#next = range.min;
  }

  /** How many descriptors are live. */
  get liveCount(): number {
    return this.#live.size;
  }

  /** True when `fd` was handed out by this space and not released since. */
  isLive(fd: number): boolean {
    return this.#live.has(fd);
  }

  /** The live descriptors, in no particular order. */
  live(): number[] {
    return [...this.#live];
  }

  /**
   * Takes the next free value.
   *
   * @returns the descriptor, or ENOBUFS when `liveMax` descriptors are already live
   */
  allocate(): Result<number> {
    if (this.#live.size >= this.liveMax) {
      return fail("ENOBUFS", `${this.kind} descriptor table is full (${this.liveMax} live)`);
    }
    // Bounded: at most liveMax values can be skipped, since only live values are skipped.
    for (let tries = 0; tries <= this.liveMax; tries++) {
      const candidate = this.#next;
      this.#next = candidate === this.range.max ? this.range.min : candidate + 1;
      if (!this.#live.has(candidate)) {
        this.#live.add(candidate);
        invariant(kindOfDescriptor(candidate) === this.kind, "descriptor routes to its kind");
        return ok(candidate);
      }
    }
    return fail("ENOBUFS", `${this.kind} descriptor space has no free value`);
  }

  /**
   * Returns a value to the space.
   *
   * @returns EBADF when the value is not live in this space
   */
  release(fd: number): Result<void> {
    if (!this.#live.delete(fd)) {
      return fail("EBADF", `descriptor ${fd} is not open in the ${this.kind} space`);
    }
    return ok(undefined);
  }
}
