/**
 * Fencing: a host whose records in the region are inconsistent is marked dead, as a host whose
 * lease ran out is. Its blocks become reclaimable at once (connected ones are reset, so their
 * peers get ECONNRESET), a host that finds itself fenced gives its lease up, and `region show`
 * says who fenced it, when (which incarnation) and why (which word held which value). SBD and
 * sanlock do the same with slots they cannot verify: fence first, then reclaim.
 *
 * The record lives in the host's slot (`HOST.fence` .. `HOST.fenceIncarnation`). It applies
 * while its incarnation equals the slot's: a new claim of the slot starts unfenced, and the last
 * record stays readable. A host that fences another reads the incarnation it knew the host by,
 * so a slot claimed again meanwhile is not fenced for its predecessor's words.
 *
 * Only words that one host alone writes and that the reader can attribute are grounds for a
 * fence: a peer's heartbeat (ahead of the clock by more than a lease), a peer's ring counters
 * and its state word during a connection, and a listener's backlog. A value nobody can be
 * blamed for (a port or extent table entry, a block's garbage state word found by a sweep)
 * fails the operation that read it and fences nobody. A fence cannot tell a host that wrote a
 * bad word from a host whose word a third process overwrote: it buys safety (no block or ring
 * used by two hosts), not availability.
 *
 * @module
 */

import type { Failure } from "../dispatch/errors.ts";
import { HOST, hostWord, type RegionLayout } from "./layout.ts";
import type { RegionMemory } from "./memory.ts";
import type { StpContext } from "./steps.ts";
import { badWord, wordName } from "./trust.ts";

/** Why a host was fenced (the `HOST.fence` word is an index into this list; 0 = never). */
export const FENCE_REASONS = [
  "none",
  "its heartbeat is ahead of the clock by more than a lease",
  "its block's state word is outside the enum",
  "its block's state word names another owner under the same generation",
  "its ring's txTail moved backwards or past the ring",
  "its ring's rxHead moved backwards or past the other side's txTail",
  "its listener's backlog is outside 1..backlogMax",
] as const;

/** Index of a reason in {@link FENCE_REASONS}. */
export const FenceReason = {
  heartbeat: 1,
  stateWord: 2,
  owner: 3,
  ringTail: 4,
  ringHead: 5,
  backlog: 6,
} as const;

/** One of {@link FenceReason}. */
export type FenceReason = typeof FenceReason[keyof typeof FenceReason];

/** A host the reader blames: its slot and the incarnation the reader knew it by. */
export interface Suspect {
  readonly hostId: number;
  readonly incarnation: number;
}

/** A fence record as `region show` reports it. */
export interface FenceRecord {
  /** Whether it applies to the slot's current incarnation (the host is fenced now). */
  readonly current: boolean;
  /** The incarnation it fenced. */
  readonly incarnation: number;
  /** The host that found the inconsistency. */
  readonly byHost: number;
  /** Why, in words. */
  readonly reason: string;
  /** The region word found inconsistent (its Int32 index). */
  readonly word: number;
  /** What the word is. */
  readonly wordName: string;
  /** The value it held. */
  readonly value: number;
}

/**
 * The incarnation a host slot holds now.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param hostId the slot (1..hostCount)
 * @returns the incarnation word
 */
export function incarnationOf(memory: RegionMemory, layout: RegionLayout, hostId: number): number {
  return memory.load(hostWord(layout, hostId, HOST.incarnation));
}

/**
 * Whether a host is fenced now: its slot holds a fence record for its current incarnation.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param hostId the slot (1..hostCount; anything else is not fenced)
 * @returns true when fenced
 */
export function fenced(memory: RegionMemory, layout: RegionLayout, hostId: number): boolean {
  if (hostId < 1 || hostId > layout.hostCount) return false;
  if (memory.load(hostWord(layout, hostId, HOST.fence)) === 0) return false;
  const at = memory.load(hostWord(layout, hostId, HOST.fenceIncarnation));
  return at === incarnationOf(memory, layout, hostId);
}

/** What a reader found: the host it blames, why, and the word and value that showed it. */
export interface Inconsistency {
  /** The host blamed, as the reader knew it. */
  readonly suspect: Suspect;
  /** Why. */
  readonly reason: FenceReason;
  /** The region word found inconsistent (its Int32 index). */
  readonly word: number;
  /** The value it held. */
  readonly value: number;
  /** What is wrong with the value, in words. */
  readonly why: string;
}

/**
 * Fences a host: writes the record (incarnation last) unless that incarnation is fenced already.
 *
 * @param ctx the fencing host
 * @param found the host blamed, the reason, the word and its value
 */
export function fenceHost(ctx: StpContext, found: Inconsistency): void {
  const { memory, layout } = ctx;
  const { hostId, incarnation } = found.suspect;
  if (hostId < 1 || hostId > layout.hostCount) return;
  const at = (field: number) => hostWord(layout, hostId, field);
  const already = memory.load(at(HOST.fence)) !== 0 &&
    memory.load(at(HOST.fenceIncarnation)) === incarnation;
  if (already) return;
  memory.store(at(HOST.fenceWord), found.word);
  memory.store(at(HOST.fenceValue), found.value);
  memory.store(at(HOST.fencedBy), ctx.hostId);
  memory.store(at(HOST.fence), found.reason);
  memory.store(at(HOST.fenceIncarnation), incarnation);
}

/**
 * Fences the host a bad word is blamed on and returns the reader's failure.
 *
 * @param ctx the reader
 * @param found the host blamed, the reason, the word and its value
 * @returns EPROTO naming the word, the value and the fence
 */
export function fenceFor(ctx: StpContext, found: Inconsistency): Failure {
  fenceHost(ctx, found);
  const failure = badWord(ctx.layout, found.word, found.value, found.why);
  return { ...failure, message: `${failure.message}; host ${found.suspect.hostId} is fenced` };
}

/**
 * The fence record of a slot, if it was ever fenced.
 *
 * @param memory the region memory
 * @param layout the region layout
 * @param hostId the slot (1..hostCount)
 * @returns the record (current or from an earlier incarnation), or null
 */
export function fenceRecord(
  memory: RegionMemory,
  layout: RegionLayout,
  hostId: number,
): FenceRecord | null {
  const at = (field: number) => memory.load(hostWord(layout, hostId, field));
  const code = at(HOST.fence);
  if (code === 0) return null;
  const word = at(HOST.fenceWord);
  const incarnation = at(HOST.fenceIncarnation);
  return {
    current: incarnation === at(HOST.incarnation),
    incarnation: incarnation >>> 0,
    byHost: at(HOST.fencedBy),
    reason: FENCE_REASONS[code] ?? `reason ${code} (unknown)`,
    word,
    wordName: wordName(layout, word),
    value: at(HOST.fenceValue),
  };
}
