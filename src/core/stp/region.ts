/**
 * Writing a fresh region ({@link formatRegion}) and validating one before use
 * ({@link attachRegion}). Attach never trusts the buffer: it reads only words it has checked are
 * inside the buffer, rebuilds the configuration from the header and the STG table, re-plans the
 * layout and requires every stored word to match, so a wrong magic or version, inconsistent
 * geometry, or an offset or length outside the buffer is a typed EINVAL, never an out-of-bounds
 * read or a hang (every loop is bounded by `LIMITS`).
 *
 * @module
 */

import { fail, ok, type Result } from "../dispatch/errors.ts";
import {
  H,
  HEADER_WORDS,
  LIMITS,
  planRegion,
  REGION_MAGIC,
  REGION_VERSION,
  type RegionConfig,
  regionIdOf,
  regionIdWords,
  type RegionLayout,
  S,
  STG_WORDS,
  stgWord,
} from "./layout.ts";
import type { RegionMemory } from "./memory.ts";

/** How a wait ended: woken (or spuriously), the word already differed, or the time ran out. */
export type WaitResult = "ok" | "not-equal" | "timed-out";

/**
 * A region ready for use: its memory, its validated layout, and how a host waits on one of its
 * words. The core never waits; adapters wait where a core step says (`WaitOn`).
 */
export interface Region {
  /** Word and byte access to the region. */
  readonly memory: RegionMemory;
  /** Its validated layout (with its id). */
  readonly layout: RegionLayout;
  /**
   * Waits while word `index` holds `value`, until a `memory.notify(index)` (by any host) wakes
   * it, at most `timeoutMs`. A region without it is waited on by polling the word every
   * millisecond (`pollingWait`).
   *
   * @returns `not-equal` when the word already differed, `timed-out` when nothing woke the
   *   waiter in time, `ok` otherwise
   */
  wait?(index: number, value: number, timeoutMs: number): Promise<WaitResult>;
  /**
   * A view of `length` bytes of the region from `byteOffset`, for the zero-copy paths (a
   * producer fills ring space in place, a consumer reads it in place). A region without it is
   * still usable: those paths then copy through a scratch buffer.
   */
  view?(byteOffset: number, length: number): Uint8Array;
  /**
   * Releases what the region holds (a file mapping, a descriptor); a region without resources
   * leaves it out. Nothing may touch `memory` afterwards (an implementation makes such a use
   * throw rather than crash); waits still pending end early.
   */
  close?(): void;
}

/**
 * A region implementation under test: makes fresh regions and attaches to existing bytes.
 * The conformance suites take one of these.
 */
export interface RegionFactory {
  /** Names the implementation in test names. */
  readonly name: string;
  /** A freshly formatted region for `config`. */
  create(config: RegionConfig): Result<Region>;
  /** A region over a copy of `bytes`, validated like {@link attachRegion}. */
  attach(bytes: Uint8Array): Result<Region>;
}

/** The header words as a layout stores them. */
function headerWords(layout: RegionLayout): number[] {
  const words = new Array<number>(HEADER_WORDS).fill(0);
  words[H.magic] = REGION_MAGIC;
  words[H.version] = REGION_VERSION;
  words[H.regionBytes] = layout.regionBytes;
  words[H.stgCount] = layout.stgs.length;
  words[H.stgTableOffset] = layout.stgTableOffset;
  words[H.hostCount] = layout.hostCount;
  words[H.hostTableOffset] = layout.hostTableOffset;
  words[H.blockCount] = layout.blockCount;
  words[H.cbtOffset] = layout.cbtOffset;
  words[H.portTableOffset] = layout.portTableOffset;
  words[H.extentTableOffset] = layout.extentTableOffset;
  words[H.extentCount] = layout.extentCount;
  words[H.extentBytes] = layout.extentBytes;
  words[H.deviceOffset] = layout.deviceOffset;
  words[H.deviceBytes] = layout.deviceBytes;
  words[H.ioTimeoutMs] = layout.ioTimeoutMs;
  words[H.leaseMs] = layout.leaseMs;
  words[H.backlogMax] = layout.backlogMax;
  const id = regionIdWords(layout.regionId);
  if (id.ok) id.value.forEach((word, i) => (words[H.regionId + i] = word));
  return words;
}

/**
 * Writes a fresh region for `layout` into `memory`, which must be zeroed and at least
 * `layout.regionBytes` long: header, STG table; every block, port and extent free.
 *
 * @param memory zeroed memory of the region
 * @param layout the planned layout
 */
export function formatInto(memory: RegionMemory, layout: RegionLayout): void {
  for (const stg of layout.stgs) {
    memory.store(stgWord(layout, stg.index, S.id), stg.id);
    memory.store(stgWord(layout, stg.index, S.firstExtent), stg.firstExtent);
    memory.store(stgWord(layout, stg.index, S.extentCount), stg.extentCount);
    memory.store(stgWord(layout, stg.index, S.ephemeralMin), stg.ephemeralMin);
    memory.store(stgWord(layout, stg.index, S.ephemeralMax), stg.ephemeralMax);
    memory.store(stgWord(layout, stg.index, S.portHint), 0);
  }
  // The magic goes last: a region is attachable only once fully written.
  headerWords(layout).forEach((word, index) => {
    if (index !== H.magic) memory.store(index, word);
  });
  memory.store(H.magic, REGION_MAGIC);
}

/**
 * Plans and writes a fresh region into a new SharedArrayBuffer.
 *
 * @param config the region configuration
 * @param regionId the region's id: a fresh random UUID (`crypto.randomUUID()`), so that two
 *   regions are never taken for one
 * @returns the buffer, or EINVAL when the configuration or the id is invalid
 *
 * @example Formatting and attaching
 * ```ts
 * import { attachRegion, formatRegion } from "./region.ts";
 * const buffer = formatRegion({
 *   stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 49152, ephemeralPortMax: 49200 }],
 *   extentBytes: 4096, blockCount: 4, hostCount: 2, ioTimeoutMs: 1000, leaseMs: 500,
 *   backlogMax: 4,
 * }, "6f1c2d3e-4b5a-4c7d-8e9f-a0b1c2d3e4f5");
 * if (!buffer.ok) throw new Error(buffer.message);
 * const layout = attachRegion(buffer.value);
 * console.assert(layout.ok && layout.value.regionId === "6f1c2d3e-4b5a-4c7d-8e9f-a0b1c2d3e4f5");
 * ```
 */
export function formatRegion(
  config: RegionConfig,
  regionId: string,
): Result<SharedArrayBuffer> {
  const layout = planRegion(config, regionId);
  if (!layout.ok) return layout;
  const buffer = new SharedArrayBuffer(layout.value.regionBytes);
  formatInto(wordWriter(buffer), layout.value);
  return ok(buffer);
}

/** A minimal writer for formatting a buffer nobody else sees yet. */
function wordWriter(buffer: SharedArrayBuffer): RegionMemory {
  const words = new Int32Array(buffer);
  return {
    byteLength: buffer.byteLength,
    load: (i) => words[i] ?? 0,
    store: (i, v) => {
      words[i] = v;
    },
    compareExchange: () => 0,
    add: () => 0,
    notify: () => {},
    readBytes: () => {},
    writeBytes: () => {},
  };
}

/** Reads the configuration and the id back from a buffer, checking each word is inside it. */
function readConfig(words: Int32Array): Result<{ config: RegionConfig; regionId: string }> {
  const word = (
    i: number,
  ): number | undefined => (i >= 0 && i < words.length ? words[i] : undefined);
  if (words.length < HEADER_WORDS) return fail("EINVAL", "buffer is shorter than a header");
  if (word(H.magic) !== REGION_MAGIC) return fail("EINVAL", "bad magic: not a lanfree region");
  if (word(H.version) !== REGION_VERSION) {
    return fail("EINVAL", `region version ${word(H.version)} is not ${REGION_VERSION}`);
  }
  const stgCount = word(H.stgCount) ?? 0;
  const stgTable = (word(H.stgTableOffset) ?? -1) / 4;
  if (stgCount < 1 || stgCount > LIMITS.stgsMax) return fail("EINVAL", "bad STG count");
  if (stgTable !== HEADER_WORDS || stgTable + stgCount * STG_WORDS > words.length) {
    return fail("EINVAL", "STG table lies outside the buffer");
  }
  const stgs = [];
  for (let i = 0; i < stgCount; i++) {
    const at = (field: number) => word(stgTable + i * STG_WORDS + field) ?? -1;
    stgs.push({
      id: at(S.id),
      extentCount: at(S.extentCount),
      ephemeralPortMin: at(S.ephemeralMin),
      ephemeralPortMax: at(S.ephemeralMax),
    });
  }
  const config = {
    stgs,
    extentBytes: word(H.extentBytes) ?? 0,
    blockCount: word(H.blockCount) ?? 0,
    hostCount: word(H.hostCount) ?? 0,
    ioTimeoutMs: word(H.ioTimeoutMs) ?? 0,
    leaseMs: word(H.leaseMs) ?? 0,
    backlogMax: word(H.backlogMax) ?? 0,
  };
  const id = [0, 1, 2, 3].map((i) => word(H.regionId + i) ?? 0);
  return ok({ config, regionId: regionIdOf(id) });
}

/**
 * Validates a region before use.
 *
 * @param buffer the region's bytes (any length; nothing outside it is read)
 * @returns the layout, or EINVAL saying what is wrong (magic, version, geometry, bounds)
 */
export function attachRegion(buffer: ArrayBufferLike): Result<RegionLayout> {
  return checkRegionHeader(new Int32Array(buffer, 0, buffer.byteLength >>> 2), buffer.byteLength);
}

/** Bytes from the start of a region that hold everything {@link checkRegionHeader} reads. */
export const HEADER_AND_STG_TABLE_BYTES = (HEADER_WORDS + LIMITS.stgsMax * STG_WORDS) * 4;

/**
 * Validates a region from its first words (the header and the STG table) and its total size,
 * without the rest of its bytes: what a file region checks before it maps anything.
 *
 * @param words the region's first words (at least the header; at most
 *   {@link HEADER_AND_STG_TABLE_BYTES} are read; nothing outside `words` is)
 * @param byteLength the region's total size in bytes
 * @returns the layout, or EINVAL saying what is wrong (magic, version, geometry, size)
 */
export function checkRegionHeader(words: Int32Array, byteLength: number): Result<RegionLayout> {
  const stored = readConfig(words);
  if (!stored.ok) return stored;
  const planned = planRegion(stored.value.config, stored.value.regionId);
  if (!planned.ok) return fail("EINVAL", `inconsistent geometry: ${planned.message}`);
  const layout = planned.value;
  if (layout.regionBytes > byteLength) {
    return fail("EINVAL", `region needs ${layout.regionBytes} bytes, buffer has ${byteLength}`);
  }
  const expected = headerWords(layout);
  for (let i = 0; i < HEADER_WORDS; i++) {
    if (i !== H.magic && words[i] !== expected[i]) {
      return fail("EINVAL", `header word ${i} is ${words[i]}, the geometry needs ${expected[i]}`);
    }
  }
  for (const stg of layout.stgs) {
    if (words[stgWord(layout, stg.index, S.firstExtent)] !== stg.firstExtent) {
      return fail("EINVAL", `STG ${stg.id} extents do not follow the previous STG's`);
    }
  }
  return ok(layout);
}
