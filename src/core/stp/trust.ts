/**
 * Every value a host reads from the region is untrusted: other processes map the same memory
 * and may have written anything there (a bug, a crash in the middle of a write, a stray write).
 * The checks here run before a value is used as an index, a length, a port or a state: a value
 * that cannot be becomes a typed failure, EPROTO, whose message names the word (what it is and
 * its index) and the value, never an exception or an access outside the region. Pure: no I/O.
 *
 * @module
 */

import { fail, type Failure, ok, type Result } from "../dispatch/errors.ts";
import { BLOCK_STATE_NAMES, BlockState, F, ownerOf, stateOf } from "./block.ts";
import {
  BLOCK_WORDS,
  blockWord,
  H,
  HEADER_WORDS,
  HOST,
  HOST_WORDS,
  PORT_WORDS,
  type RegionLayout,
  S,
  STG_WORDS,
  type StgLayout,
} from "./layout.ts";
import { loadField, type StpContext } from "./steps.ts";

/** Largest port number a block may hold. */
export const PORT_MAX = 0xffff;

const nameOf = (table: Readonly<Record<string, number>>, field: number): string =>
  Object.entries(table).find(([, at]) => at === field)?.[0] ?? `word ${field}`;

/** Names what lies at a word outside the control block table and the host table. */
function tableWordName(layout: RegionLayout, index: number): string | undefined {
  const byte = index * 4;
  if (index >= 0 && index < HEADER_WORDS) return `header ${nameOf(H, index)}`;
  const stgEnd = layout.stgTableOffset + layout.stgs.length * STG_WORDS * 4;
  if (byte >= layout.stgTableOffset && byte < stgEnd) {
    const at = index - layout.stgTableOffset / 4;
    const stg = layout.stgs[Math.floor(at / STG_WORDS)];
    return `STG ${stg?.id} ${nameOf(S, at % STG_WORDS)}`;
  }
  const portEnd = layout.portTableOffset + layout.stgs.length * PORT_WORDS * 4;
  if (byte >= layout.portTableOffset && byte < portEnd) {
    const at = index - layout.portTableOffset / 4;
    return `port table of STG ${layout.stgs[Math.floor(at / PORT_WORDS)]?.id}, port ${
      at % PORT_WORDS
    }`;
  }
  const extentEnd = layout.extentTableOffset + layout.extentCount * 4;
  if (byte >= layout.extentTableOffset && byte < extentEnd) {
    return `extent table entry ${index - layout.extentTableOffset / 4}`;
  }
  if (byte >= layout.deviceOffset && byte < layout.deviceOffset + layout.deviceBytes) {
    const relative = byte - layout.deviceOffset;
    return `extent ${Math.floor(relative / layout.extentBytes)} byte ${
      relative % layout.extentBytes
    }`;
  }
  return undefined;
}

/**
 * What a region word is, in words: `control block 3 txTail`, `host slot 2 heartbeat`,
 * `port table of STG 1, port 9`, ... (for messages and `region show`).
 *
 * @param layout the region layout
 * @param index the word's Int32 index from the region start
 * @returns its name
 */
export function wordName(layout: RegionLayout, index: number): string {
  const byte = index * 4;
  const hostEnd = layout.hostTableOffset + (layout.hostCount + 1) * HOST_WORDS * 4;
  if (byte >= layout.hostTableOffset && byte < hostEnd) {
    const at = index - layout.hostTableOffset / 4;
    return `host slot ${Math.floor(at / HOST_WORDS)} ${nameOf(HOST, at % HOST_WORDS)}`;
  }
  const cbtEnd = layout.cbtOffset + layout.blockCount * BLOCK_WORDS * 4;
  if (byte >= layout.cbtOffset && byte < cbtEnd) {
    const at = index - layout.cbtOffset / 4;
    return `control block ${Math.floor(at / BLOCK_WORDS)} ${nameOf(F, at % BLOCK_WORDS)}`;
  }
  return tableWordName(layout, index) ?? `word ${index} (outside every table)`;
}

/**
 * The typed failure for a word whose value cannot be: EPROTO, naming the word and the value.
 *
 * @param layout the region layout
 * @param index the word
 * @param value what it held
 * @param why what is wrong with it
 * @returns the failure
 */
export function badWord(layout: RegionLayout, index: number, value: number, why: string): Failure {
  return fail("EPROTO", `${wordName(layout, index)} (word ${index}) is ${value}: ${why}`);
}

/** The largest valid state. */
const STATE_MAX = BlockState.releasing;

/**
 * What is wrong with a state word, if anything: a state outside the enum, or a block in use
 * whose owner is not a host slot of the region. A free block's owner bits are ignored (taking
 * the block replaces the whole word).
 *
 * @param word the state word
 * @param hostCount the region's host slots
 * @returns the problem in words, or undefined for a valid word
 */
export function stateWordProblem(word: number, hostCount: number): string | undefined {
  const state = stateOf(word);
  if (state > STATE_MAX) return `state ${state} is outside the enum (0..${STATE_MAX})`;
  if (state === BlockState.free) return undefined;
  const owner = ownerOf(word);
  if (owner < 1 || owner > hostCount) {
    return `a ${BLOCK_STATE_NAMES[state]} block owned by ${owner}, not a host slot ` +
      `(1..${hostCount})`;
  }
  return undefined;
}

/**
 * Loads a block field that names another block (peer, listener) and checks it is one.
 *
 * @returns the block index, or EPROTO naming the field and its value
 */
export function loadBlockIndex(ctx: StpContext, block: number, field: number): Result<number> {
  const value = loadField(ctx, block, field);
  if (Number.isInteger(value) && value >= 0 && value < ctx.layout.blockCount) return ok(value);
  return badWord(
    ctx.layout,
    blockWord(ctx.layout, block, field),
    value,
    `not a control block of this region (0..${ctx.layout.blockCount - 1})`,
  );
}

/**
 * Loads a block's STG index and checks the region has that STG.
 *
 * @returns the STG, or EPROTO naming the field and its value
 */
export function loadStg(ctx: StpContext, block: number): Result<StgLayout> {
  const value = loadField(ctx, block, F.stgIndex);
  const stg = ctx.layout.stgs[value];
  if (stg !== undefined && value >= 0) return ok(stg);
  return badWord(
    ctx.layout,
    blockWord(ctx.layout, block, F.stgIndex),
    value,
    `not an STG of this region (0..${ctx.layout.stgs.length - 1})`,
  );
}

/**
 * Loads a block field holding a port (its own, or its peer's) and checks it is one (1..65535).
 *
 * @returns the port, or EPROTO naming the field and its value
 */
export function loadPort(ctx: StpContext, block: number, field: number): Result<number> {
  const value = loadField(ctx, block, field);
  if (value >= 1 && value <= PORT_MAX) return ok(value);
  return badWord(ctx.layout, blockWord(ctx.layout, block, field), value, "not a port (1..65535)");
}

/**
 * Loads a block field holding an extent + 1 (a ring) and checks the extent lies in the STG.
 *
 * @returns the extent, or EPROTO naming the field and its value
 */
export function loadExtent(
  ctx: StpContext,
  block: number,
  field: number,
  stg: StgLayout,
): Result<number> {
  const extent = loadField(ctx, block, field) - 1;
  if (extent >= stg.firstExtent && extent < stg.firstExtent + stg.extentCount) return ok(extent);
  return badWord(
    ctx.layout,
    blockWord(ctx.layout, block, field),
    extent + 1,
    `extent ${extent} is outside STG ${stg.id} (extents ${stg.firstExtent}..` +
      `${stg.firstExtent + stg.extentCount - 1})`,
  );
}
