/**
 * The region layout: where the header, the STG table, the host table, the control block table
 * (CBT), the port tables, the extent owner table and the device area sit in a region, computed
 * from a validated {@link RegionConfig}. Pure: geometry only, no Atomics, no I/O.
 *
 * Every offset is in bytes from the start of the region and is a multiple of 64, so each table
 * starts on its own cache line. A region is at most `REGION_BYTES_MAX` (2^31 - 64) bytes so that
 * every offset and word index fits an Int32 word.
 *
 * @module
 */

import { z } from "zod";
import { invariant, type SameType } from "../assert.ts";
import { fail, ok, type Result } from "../dispatch/errors.ts";

/** "LNFR" as a little-endian Int32: the first word of every region. */
export const REGION_MAGIC = 0x52464e4c;
/** Layout version written by `formatInto`; attach refuses any other (2: the region id). */
export const REGION_VERSION = 2;
/** Largest region: every byte offset must fit a signed 32-bit word. */
export const REGION_BYTES_MAX = 0x7fff_ffc0;
/** Header size in Int32 words (one 128-byte area). */
export const HEADER_WORDS = 32;
/** Words per STG table entry. */
export const STG_WORDS = 8;
/** Words per host table entry (one cache line, so heartbeats do not share lines). */
export const HOST_WORDS = 16;
/** Words per control block (two cache lines: control words, then ring counters). */
export const BLOCK_WORDS = 32;
/** Port table words per STG: one owner word per port number 0..65535. */
export const PORT_WORDS = 65536;
/** Alignment of every table and of the device area, in bytes. */
export const ALIGN_BYTES = 64;
/** Limits on the configuration. */
export const LIMITS = {
  stgsMax: 16,
  hostsMax: 255,
  blocksMax: 4096,
  backlogMax: 64,
  extentBytesMin: 4096,
  extentBytesMax: 1 << 28,
  extentsPerStgMax: 4096,
  timeoutMsMax: 600_000,
} as const;

/** Header word indices. */
export const H = {
  magic: 0,
  version: 1,
  regionBytes: 2,
  stgCount: 3,
  stgTableOffset: 4,
  hostCount: 5,
  hostTableOffset: 6,
  blockCount: 7,
  cbtOffset: 8,
  portTableOffset: 9,
  extentTableOffset: 10,
  extentCount: 11,
  extentBytes: 12,
  deviceOffset: 13,
  deviceBytes: 14,
  ioTimeoutMs: 15,
  leaseMs: 16,
  backlogMax: 17,
  /** Four words: the region id, a UUID's 16 bytes in order. */
  regionId: 18,
} as const;

/** The id a planned layout carries until a region is formatted with its own. */
export const NIL_REGION_ID = "00000000-0000-0000-0000-000000000000";

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The four header words of a region id.
 *
 * @param regionId a UUID in its canonical form (lower-case hex, 8-4-4-4-12)
 * @returns the words, or EINVAL for anything else
 */
export function regionIdWords(regionId: string): Result<[number, number, number, number]> {
  if (!UUID_PATTERN.test(regionId)) {
    return fail("EINVAL", `region id ${JSON.stringify(regionId)} is not a lower-case UUID`);
  }
  const hex = regionId.replaceAll("-", "");
  const word = (i: number) => Number.parseInt(hex.slice(i * 8, i * 8 + 8), 16) | 0;
  return ok([word(0), word(1), word(2), word(3)]);
}

/** The region id held in four header words (the inverse of {@link regionIdWords}). */
export function regionIdOf(words: readonly number[]): string {
  const hex = words.map((w) => (w >>> 0).toString(16).padStart(8, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20, 32)
  }`;
}

/** STG table entry word indices. */
export const S = {
  id: 0,
  firstExtent: 1,
  extentCount: 2,
  ephemeralMin: 3,
  ephemeralMax: 4,
  portHint: 5,
} as const;

/**
 * Host table entry word indices: the lease (heartbeat, 0 = slot free), the incarnation (claims
 * so far) and the holder's process id (a label for `region show`); then the **fence record**
 * (all zero until a host is fenced): why (a `FENCE_REASONS` index), which incarnation, the
 * region word that was found inconsistent and its value, and the host that found it. The
 * incarnation is written last: a slot is fenced while `fence` is not 0 and `fenceIncarnation`
 * equals its incarnation, so a new claim of the slot is never fenced by its predecessor's record.
 */
export const HOST = {
  heartbeat: 0,
  incarnation: 1,
  pid: 2,
  fence: 3,
  fenceWord: 4,
  fenceValue: 5,
  fencedBy: 6,
  fenceIncarnation: 7,
} as const;

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** One storage transport group as configured. */
export const stgConfigSchema = z.object({
  /** The STG id users name in a storage address. */
  id: z.number().int().min(0).max(0xffff),
  /** How many device extents (each `extentBytes`, one ring each) the STG owns. */
  extentCount: z.number().int().min(2).max(LIMITS.extentsPerStgMax),
  /** Lowest dynamic port. */
  ephemeralPortMin: z.number().int().min(1).max(0xffff),
  /** Highest dynamic port. */
  ephemeralPortMax: z.number().int().min(1).max(0xffff),
}).refine((s) => s.ephemeralPortMin <= s.ephemeralPortMax, "ephemeral range is empty");

/** The configuration of a region (validated by {@link planRegion}). */
export const regionConfigSchema = z.object({
  stgs: z.array(stgConfigSchema).min(1).max(LIMITS.stgsMax)
    .refine((s) => new Set(s.map((g) => g.id)).size === s.length, "STG ids must be unique"),
  extentBytes: z.number().int().min(LIMITS.extentBytesMin).max(LIMITS.extentBytesMax)
    .refine(isPowerOfTwo, "extentBytes must be a power of two"),
  blockCount: z.number().int().min(1).max(LIMITS.blocksMax),
  hostCount: z.number().int().min(1).max(LIMITS.hostsMax),
  ioTimeoutMs: z.number().int().min(1).max(LIMITS.timeoutMsMax),
  leaseMs: z.number().int().min(1).max(LIMITS.timeoutMsMax),
  backlogMax: z.number().int().min(1).max(LIMITS.backlogMax),
});

/** One storage transport group as configured (see {@link LIMITS} for the bounds). */
export interface StgConfig {
  /** The STG id users name in a storage address, 0..65535. */
  readonly id: number;
  /** How many device extents (each `extentBytes`, one ring each) the STG owns, at least 2. */
  readonly extentCount: number;
  /** Lowest dynamic port. */
  readonly ephemeralPortMin: number;
  /** Highest dynamic port (not below `ephemeralPortMin`). */
  readonly ephemeralPortMax: number;
}

/** A region configuration, checked by {@link planRegion} (see {@link LIMITS} for the bounds). */
export interface RegionConfig {
  /** The STGs, 1..16, with unique ids. */
  readonly stgs: StgConfig[];
  /** Size of one device extent (one ring), a power of two in bytes. */
  readonly extentBytes: number;
  /** Control blocks in the control block table. */
  readonly blockCount: number;
  /** Host table entries (host ids 1..hostCount). */
  readonly hostCount: number;
  /** Every wait on the region is bounded by this, in ms. */
  readonly ioTimeoutMs: number;
  /** A host whose heartbeat is older than this, in ms, is dead and its blocks reclaimable. */
  readonly leaseMs: number;
  /** Largest listen backlog. */
  readonly backlogMax: number;
}
// `deno check` fails here when the types above and the schema stop describing the same values.
const _configMatchesSchema: SameType<RegionConfig, z.input<typeof regionConfigSchema>> = true;

/** One STG in a planned layout. */
export interface StgLayout {
  /** Its position in the STG table. */
  readonly index: number;
  /** The STG id users name in a storage address. */
  readonly id: number;
  /** Its first extent in the extent table. */
  readonly firstExtent: number;
  /** How many extents (one ring each) it owns. */
  readonly extentCount: number;
  /** Its lowest dynamic port. */
  readonly ephemeralMin: number;
  /** Its highest dynamic port. */
  readonly ephemeralMax: number;
  /** Bytes of device space the STG owns ("STG info" length). */
  readonly lengthBytes: number;
}

/** The computed geometry of a region. All offsets in bytes from the region start. */
export interface RegionLayout {
  /**
   * The region's id, a random UUID written when it was formatted (what a handshake compares to
   * tell two sides attached the same region); {@link NIL_REGION_ID} in a layout only planned.
   */
  readonly regionId: string;
  /** Size of the whole region. */
  readonly regionBytes: number;
  /** Where the STG table starts. */
  readonly stgTableOffset: number;
  /** Where the host table starts. */
  readonly hostTableOffset: number;
  /** Host table entries. */
  readonly hostCount: number;
  /** Where the control block table starts. */
  readonly cbtOffset: number;
  /** Control blocks in the table. */
  readonly blockCount: number;
  /** Where the port tables start (one per STG). */
  readonly portTableOffset: number;
  /** Where the extent owner table starts. */
  readonly extentTableOffset: number;
  /** Extents in the device area, over all STGs. */
  readonly extentCount: number;
  /** Size of one extent. */
  readonly extentBytes: number;
  /** Where the device area starts. */
  readonly deviceOffset: number;
  /** Size of the device area. */
  readonly deviceBytes: number;
  /** Bound of every wait, ms (from the header). */
  readonly ioTimeoutMs: number;
  /** Host lease, ms (from the header). */
  readonly leaseMs: number;
  /** Largest listen backlog (from the header). */
  readonly backlogMax: number;
  /** The STGs, in table order. */
  readonly stgs: readonly StgLayout[];
}

const alignUp = (bytes: number): number => Math.ceil(bytes / ALIGN_BYTES) * ALIGN_BYTES;

/**
 * Computes the layout of a region from its configuration.
 *
 * @param config the configuration (checked here)
 * @param regionId the id the layout carries (default {@link NIL_REGION_ID}; a formatted region
 *   has its own)
 * @returns the layout, or EINVAL with the reason when the configuration is invalid, the id is
 *   not a UUID, or the region would exceed `REGION_BYTES_MAX`
 *
 * @example Planning a small region
 * ```ts
 * import { planRegion } from "./layout.ts";
 * const planned = planRegion({
 *   stgs: [{ id: 1, extentCount: 4, ephemeralPortMin: 49152, ephemeralPortMax: 49160 }],
 *   extentBytes: 4096, blockCount: 8, hostCount: 2, ioTimeoutMs: 1000, leaseMs: 500,
 *   backlogMax: 4,
 * });
 * console.assert(planned.ok && planned.value.extentCount === 4);
 * ```
 */
export function planRegion(
  config: RegionConfig,
  regionId: string = NIL_REGION_ID,
): Result<RegionLayout> {
  const idWords = regionIdWords(regionId);
  if (!idWords.ok) return idWords;
  const parsed = regionConfigSchema.safeParse(config);
  if (!parsed.success) {
    return fail("EINVAL", `invalid region config: ${parsed.error.issues[0]?.message ?? "?"}`);
  }
  const c = parsed.data;
  const stgTableOffset = HEADER_WORDS * 4;
  const hostTableOffset = alignUp(stgTableOffset + c.stgs.length * STG_WORDS * 4);
  const cbtOffset = alignUp(hostTableOffset + (c.hostCount + 1) * HOST_WORDS * 4);
  const portTableOffset = alignUp(cbtOffset + c.blockCount * BLOCK_WORDS * 4);
  const extentTableOffset = alignUp(portTableOffset + c.stgs.length * PORT_WORDS * 4);
  const extentCount = c.stgs.reduce((sum, s) => sum + s.extentCount, 0);
  const deviceOffset = alignUp(extentTableOffset + extentCount * 4);
  const deviceBytes = extentCount * c.extentBytes;
  const regionBytes = deviceOffset + deviceBytes;
  if (regionBytes > REGION_BYTES_MAX) {
    return fail("EINVAL", `region of ${regionBytes} bytes exceeds ${REGION_BYTES_MAX}`);
  }
  let firstExtent = 0;
  const stgs = c.stgs.map((s, index): StgLayout => {
    const stg = {
      index,
      id: s.id,
      firstExtent,
      extentCount: s.extentCount,
      ephemeralMin: s.ephemeralPortMin,
      ephemeralMax: s.ephemeralPortMax,
      lengthBytes: s.extentCount * c.extentBytes,
    };
    firstExtent += s.extentCount;
    return stg;
  });
  invariant(firstExtent === extentCount, "STG extents cover the device area exactly");
  return ok({
    regionId,
    regionBytes,
    stgTableOffset,
    hostTableOffset,
    hostCount: c.hostCount,
    cbtOffset,
    blockCount: c.blockCount,
    portTableOffset,
    extentTableOffset,
    extentCount,
    extentBytes: c.extentBytes,
    deviceOffset,
    deviceBytes,
    ioTimeoutMs: c.ioTimeoutMs,
    leaseMs: c.leaseMs,
    backlogMax: c.backlogMax,
    stgs,
  });
}

/** Int32 word index of a header word. */
export const headerWord = (field: number): number => field;
/** Int32 word index of a word of an STG entry. */
export const stgWord = (layout: RegionLayout, stgIndex: number, field: number): number =>
  layout.stgTableOffset / 4 + stgIndex * STG_WORDS + field;
/** Int32 word index of a word of a host entry (host ids are 1..hostCount). */
export const hostWord = (layout: RegionLayout, hostId: number, field: number): number =>
  layout.hostTableOffset / 4 + hostId * HOST_WORDS + field;
/** Int32 word index of a word of a control block. */
export const blockWord = (layout: RegionLayout, block: number, field: number): number =>
  layout.cbtOffset / 4 + block * BLOCK_WORDS + field;
/** Int32 word index of the owner word of a port in an STG. */
export const portWord = (layout: RegionLayout, stgIndex: number, port: number): number =>
  layout.portTableOffset / 4 + stgIndex * PORT_WORDS + port;
/** Int32 word index of the owner word of an extent. */
export const extentWord = (layout: RegionLayout, extent: number): number =>
  layout.extentTableOffset / 4 + extent;
/** Byte offset of an extent in the region. */
export const extentOffset = (layout: RegionLayout, extent: number): number =>
  layout.deviceOffset + extent * layout.extentBytes;

/** The STG with a given id, or undefined. */
export function stgById(layout: RegionLayout, id: number): StgLayout | undefined {
  return layout.stgs.find((s) => s.id === id);
}
