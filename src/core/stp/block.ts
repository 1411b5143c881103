/**
 * Control blocks: the state word and the fields of one block of the CBT.
 *
 * The **state word** packs, in one Int32 so one compare-and-exchange changes them together:
 * bits 0-3 the {@link BlockState}, bits 4-11 the owner host id (1..255, 0 for a free block),
 * bits 12-31 the block's generation (incremented each time the block is allocated, kept while
 * free). A reference to a block is its index and generation; every CAS on a state word expects
 * the whole word, so a block freed and reused since (a new generation) is never mistaken for the
 * one referenced (ABA-safe for 2^20 reuses).
 *
 * @module
 */

import { invariant } from "../assert.ts";

/** The states of a control block. */
export const BlockState = {
  /** In the free pool. */
  free: 0,
  /** Allocated by `socket`, bound to no destination. */
  allocated: 1,
  /** Holds a port of an STG. */
  bound: 2,
  /** Accepts connections; connectors queue on it. */
  listening: 3,
  /** Queued on a listener, waiting for `accept`. */
  connecting: 4,
  /** Claimed by an acceptor that is setting up the rings (transient). */
  pairing: 5,
  /** Paired with a peer block; rings in use. */
  connected: 6,
  /** Connected, then closed by its owner; waits for the peer to close. */
  closed: 7,
  /** Connected, then reclaimed because its owner died; the peer sees ECONNRESET. */
  reset: 8,
  /** The acceptor refused this connector (listener closed, or no ring space). */
  refused: 9,
  /** Being returned to the pool by the host in the owner bits (transient). */
  releasing: 10,
} as const;

/** One of {@link BlockState}. */
export type BlockState = typeof BlockState[keyof typeof BlockState];

/** Names of the states, for messages. */
export const BLOCK_STATE_NAMES: readonly string[] = Object.keys(BlockState);

/** Which state may follow which (owner, acceptor or reclaimer moves). Checked by `invariant`. */
export const BLOCK_TRANSITIONS: Readonly<Record<BlockState, readonly BlockState[]>> = {
  [BlockState.free]: [BlockState.allocated],
  [BlockState.allocated]: [BlockState.bound, BlockState.connected, BlockState.releasing],
  [BlockState.bound]: [BlockState.listening, BlockState.connecting, BlockState.releasing],
  [BlockState.listening]: [BlockState.releasing],
  [BlockState.connecting]: [
    BlockState.pairing,
    BlockState.bound,
    BlockState.refused,
    BlockState.releasing,
  ],
  [BlockState.pairing]: [
    BlockState.connected,
    BlockState.refused,
    BlockState.connecting,
    BlockState.bound,
    BlockState.releasing,
  ],
  [BlockState.connected]: [BlockState.closed, BlockState.reset],
  [BlockState.closed]: [BlockState.releasing],
  [BlockState.reset]: [BlockState.releasing],
  [BlockState.refused]: [BlockState.bound, BlockState.releasing],
  [BlockState.releasing]: [BlockState.free, BlockState.releasing],
};

/** Block field word offsets inside a block. */
export const F = {
  state: 0,
  /** Bumped (and notified) after every publish by or about this block. */
  doorbell: 1,
  stgIndex: 2,
  port: 3,
  /** 1 when the block owns its port's entry in the port table. */
  portHeld: 4,
  peerIndex: 5,
  peerGen: 6,
  txExtent: 7,
  rxExtent: 8,
  backlog: 9,
  /** Listener: next ticket to hand out. Connector: its ticket (FIFO order of the queue). */
  ticket: 10,
  targetIndex: 11,
  targetGen: 12,
  remotePort: 13,
  /**
   * Bumped (and notified) when this block's consumer frees ring space (its `rxHead` advances)
   * and with every state change: what a producer waiting for space waits on, so it is not woken
   * by the data its peer sends it the other way.
   */
  spaceBell: 14,
  /** Bytes written into the tx ring, modulo 2^32 (its own cache line). */
  txTail: 16,
  /** Bytes read from the rx ring, modulo 2^32. */
  rxHead: 24,
} as const;

/** Largest generation + 1. */
export const GEN_MODULUS = 1 << 20;
/** Largest host id. */
export const HOST_ID_MAX = 255;

/** Packs a state word. */
export function packState(state: BlockState, hostId: number, gen: number): number {
  invariant(hostId >= 0 && hostId <= HOST_ID_MAX, "host id fits 8 bits");
  return (state | (hostId << 4) | ((gen % GEN_MODULUS) << 12)) | 0;
}

/** The state in a state word. */
export const stateOf = (word: number): BlockState => (word & 0xf) as BlockState;
/** The owner host id in a state word. */
export const ownerOf = (word: number): number => (word >>> 4) & 0xff;
/** The generation in a state word. */
export const genOf = (word: number): number => word >>> 12;

/**
 * Whether a state word may move to `state`: false for a state outside the enum (read from a
 * region word that cannot be), so a caller never computes a transition from one.
 */
export function canMove(word: number, state: BlockState): boolean {
  return BLOCK_TRANSITIONS[stateOf(word)]?.includes(state) === true;
}

/** The same word with another state (owner and generation kept). */
export function withState(word: number, state: BlockState): number {
  invariant(
    BLOCK_TRANSITIONS[stateOf(word)].includes(state),
    `block state ${BLOCK_STATE_NAMES[stateOf(word)]} -> ${BLOCK_STATE_NAMES[state]} is legal`,
  );
  return ((word & ~0xf) | state) | 0;
}

/** The same word with another owner and state (generation kept). */
export function withOwner(word: number, state: BlockState, hostId: number): number {
  invariant(BLOCK_TRANSITIONS[stateOf(word)].includes(state), "ownership move is legal");
  return packState(state, hostId, genOf(word));
}

/** A reference to one use of a block: its index and the generation it had. */
export interface BlockRef {
  readonly index: number;
  readonly gen: number;
}
