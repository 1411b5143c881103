/**
 * What `region show` prints: the header, each STG's extents and ports in use, the control
 * blocks by state and owner (with what is wrong with a state word that cannot be), and each host
 * slot with its lease age and, for a fenced host, who fenced it and why. Pure: reads the region
 * through its memory, time comes in as `nowMs`.
 *
 * @module
 */

import { BLOCK_STATE_NAMES, BlockState, F, genOf, ownerOf, stateOf } from "./block.ts";
import { type HostSlot, hostSlots } from "./hosts.ts";
import {
  blockWord,
  extentWord,
  PORT_WORDS,
  portWord,
  REGION_VERSION,
  type RegionLayout,
} from "./layout.ts";
import type { RegionMemory } from "./memory.ts";
import { stateWordProblem } from "./trust.ts";

/** One STG as `region show` reports it. */
export interface StgReport {
  /** The STG id. */
  readonly id: number;
  /** Device bytes the STG owns (what the handshakes send as its length). */
  readonly lengthBytes: number;
  /** Its extents (one ring each): how many, how many hold a ring, how many are free. */
  readonly extents: { readonly total: number; readonly used: number; readonly free: number };
  /** Its dynamic port range. */
  readonly ephemeralPorts: { readonly min: number; readonly max: number };
  /** Ports held by a control block, ascending. */
  readonly portsInUse: number[];
}

/** One control block that is not free. */
export interface BlockReport {
  /** The block's index in the CBT. */
  readonly index: number;
  /** Its state's name (`listening`, `connected`, ...). */
  readonly state: string;
  /** The host slot in its owner bits. */
  readonly owner: number;
  /** Its generation (bumped at each allocation). */
  readonly generation: number;
  /** The STG id of the port the block holds, when it holds one. */
  readonly stg: number | null;
  /** That port. */
  readonly port: number | null;
  /**
   * Why its state word cannot be, or null: a state outside the enum, or an owner that is not a
   * host slot. Such a block is left alone by allocation and reclaim (see `trust.ts`).
   */
  readonly problem: string | null;
}

/** A whole region, as `region show` reports it. */
export interface RegionReport {
  /** The region's id (a UUID written when it was formatted). */
  readonly regionId: string;
  /** Its layout version. */
  readonly version: number;
  /** Its size in bytes. */
  readonly regionBytes: number;
  /** The size of each extent (each ring), bytes. */
  readonly extentBytes: number;
  /** The I/O timeout every host applies, ms. */
  readonly ioTimeoutMs: number;
  /** How long a host's lease lasts without renewal, ms. */
  readonly leaseMs: number;
  /** The largest listen backlog. */
  readonly backlogMax: number;
  /** Each STG. */
  readonly stgs: StgReport[];
  /** How many blocks are in each state (every state named, zeros included). */
  readonly blocksByState: Record<string, number>;
  /** The blocks that are not free. */
  readonly blocks: BlockReport[];
  /** Every host slot. */
  readonly hosts: HostSlot[];
}

function stgReport(memory: RegionMemory, layout: RegionLayout, stgIndex: number): StgReport {
  const stg = layout.stgs[stgIndex]!;
  let used = 0;
  for (let e = stg.firstExtent; e < stg.firstExtent + stg.extentCount; e++) {
    if (memory.load(extentWord(layout, e)) !== 0) used++;
  }
  const portsInUse: number[] = [];
  for (let port = 0; port < PORT_WORDS; port++) {
    if (memory.load(portWord(layout, stgIndex, port)) !== 0) portsInUse.push(port);
  }
  return {
    id: stg.id,
    lengthBytes: stg.lengthBytes,
    extents: { total: stg.extentCount, used, free: stg.extentCount - used },
    ephemeralPorts: { min: stg.ephemeralMin, max: stg.ephemeralMax },
    portsInUse,
  };
}

function blockReport(memory: RegionMemory, layout: RegionLayout, index: number): BlockReport {
  const word = memory.load(blockWord(layout, index, F.state));
  const held = memory.load(blockWord(layout, index, F.portHeld)) === 1;
  const stgIndex = memory.load(blockWord(layout, index, F.stgIndex));
  const stg = held ? layout.stgs[stgIndex]?.id ?? null : null;
  return {
    index,
    state: BLOCK_STATE_NAMES[stateOf(word)] ?? `state ${stateOf(word)}`,
    owner: ownerOf(word),
    generation: genOf(word),
    stg,
    port: stg === null ? null : memory.load(blockWord(layout, index, F.port)),
    problem: stateWordProblem(word, layout.hostCount) ?? null,
  };
}

/**
 * Reads everything `region show` prints.
 *
 * @param memory the region memory
 * @param layout its layout
 * @param nowMs the wall clock in ms (for lease ages)
 * @returns the report
 */
export function regionReport(
  memory: RegionMemory,
  layout: RegionLayout,
  nowMs: number,
): RegionReport {
  const blocksByState: Record<string, number> = Object.fromEntries(
    BLOCK_STATE_NAMES.map((name) => [name, 0]),
  );
  const blocks: BlockReport[] = [];
  for (let b = 0; b < layout.blockCount; b++) {
    const report = blockReport(memory, layout, b);
    blocksByState[report.state] = (blocksByState[report.state] ?? 0) + 1;
    if (report.state !== BLOCK_STATE_NAMES[BlockState.free]) blocks.push(report);
  }
  return {
    regionId: layout.regionId,
    version: REGION_VERSION,
    regionBytes: layout.regionBytes,
    extentBytes: layout.extentBytes,
    ioTimeoutMs: layout.ioTimeoutMs,
    leaseMs: layout.leaseMs,
    backlogMax: layout.backlogMax,
    stgs: layout.stgs.map((stg) => stgReport(memory, layout, stg.index)),
    blocksByState,
    blocks,
    hosts: hostSlots(memory, layout, nowMs),
  };
}
