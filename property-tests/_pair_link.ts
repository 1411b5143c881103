/**
 * The link model both pair suites share (`session_pair_suite.ts` for the backup machines,
 * `restore_pair_suite.ts` for the restore machines): two sides, frames on separate channels (so
 * frames of different channels overtake each other), each side's view of time, the commands that
 * act on the world, the faults of the link (a break each side learns of at its own time, a
 * stall past the silence rule), the tick rule checked on each side, and the end rule.
 *
 * @module
 */

import fc from "fast-check";
import type { SessionTimes } from "../src/core/session/session_clock.ts";

/**
 * The time rules of both pairs. The healthy commands move the clock at most 80 x 20 ms, under
 * `peerSilentMs`: only a stall (a fault) makes a side give up on a silent peer.
 */
export const PAIR_TIMES: SessionTimes = { keepaliveMs: 100, peerSilentMs: 2_000 };
/** Steps the drain may take to end a run (a bound, not a timing). */
export const PAIR_DRAIN_STEPS_MAX = 400;

export type Side = "client" | "server";
export type Channel = "control" | "error" | "data" | "keepalive";
export const SIDES: readonly Side[] = ["client", "server"];
export const CHANNELS: readonly Channel[] = ["control", "error", "data", "keepalive"];

/** A frame in flight toward `to`. */
export interface LinkFrame {
  readonly to: Side;
  readonly channel: Channel;
  readonly what: string;
}

/** What the model knows of one side. */
export interface SideModel {
  lastHeardMs: number;
  lastKeepaliveMs: number;
  outcome: "done" | "failed" | undefined;
  snapshotId: string | undefined;
  sentFailed: boolean;
}

/** A side as the model first sees it. */
export function newSideModel(): SideModel {
  return {
    lastHeardMs: 0,
    lastKeepaliveMs: 0,
    outcome: undefined,
    snapshotId: undefined,
    sentFailed: false,
  };
}

/** What every pair world holds. */
export interface PairWorld<F extends LinkFrame = LinkFrame> {
  nowMs: number;
  readonly client: { readonly ended: boolean; readonly state: string };
  readonly server: { readonly ended: boolean; readonly state: string };
  frames: F[];
  broken: boolean;
  /** Failures the break still owes each side. */
  breakOwed: Set<Side>;
  faults: string[];
  sides: Record<Side, SideModel>;
  path: string[];
}

/** Fails the run with the last steps of its path. */
export function failPair(world: PairWorld, text: string): never {
  throw new Error(`${text}\n  after: ${world.path.slice(-25).join(" ; ")}`);
}

/** Puts a frame on the link (a broken link loses it). */
export function sendFrame<F extends LinkFrame>(world: PairWorld<F>, frame: F): void {
  if (!world.broken) world.frames.push(frame);
}

/**
 * Checks one side's tick against the time rows, before the actions are applied.
 *
 * @param failedKind the action by which the side fails (the model looks for it)
 */
export function checkPairTick(
  world: PairWorld,
  side: Side,
  kinds: readonly string[],
  live: boolean,
  silenceFails: boolean,
  failedKind: string,
): void {
  const model = world.sides[side];
  if (!live) return;
  if (silenceFails && world.nowMs - model.lastHeardMs >= PAIR_TIMES.peerSilentMs) {
    if (!kinds.includes(failedKind)) failPair(world, `the ${side} did not fail for a silent peer`);
    return;
  }
  if (
    world.nowMs - model.lastKeepaliveMs >= PAIR_TIMES.keepaliveMs &&
    !kinds.includes("send-keepalive")
  ) {
    failPair(
      world,
      `the ${side} sent no keepalive ${PAIR_TIMES.keepaliveMs} ms after the last one`,
    );
  }
}

/** One command: something happens, when the world allows it. */
export class PairCommand<W extends PairWorld> implements fc.Command<W, W> {
  constructor(
    readonly label: string,
    readonly allowed: (world: W) => boolean,
    readonly apply: (world: W) => void,
  ) {}
  check(world: Readonly<W>): boolean {
    return !(world.client.ended && world.server.ended) && this.allowed(world as W);
  }
  run(_: W, world: W): void {
    world.path.push(this.label);
    this.apply(world);
  }
  toString(): string {
    return this.label;
  }
}

/**
 * The link's faults: the connection breaks (frames in flight are lost; each side learns it at
 * its own time, `breakNotice`), and the link stalls past the silence rule (`tick` moves the
 * clock and ticks both sides).
 */
export function linkFaults<W extends PairWorld>(
  tick: (world: W, delayMs: number) => void,
  breakNotice: (world: W, side: Side) => void,
): fc.Arbitrary<PairCommand<W>>[] {
  return [
    fc.constant(
      new PairCommand<W>("the connection breaks", (w) => !w.broken, (w) => {
        w.broken = true;
        w.frames = [];
        w.faults.push("the connection broke");
        for (const side of SIDES) w.breakOwed.add(side);
      }),
    ),
    fc.constantFrom(...SIDES).map((side) =>
      new PairCommand<W>(
        `${side} learns of the break`,
        (w) => w.breakOwed.has(side),
        (w) => breakNotice(w, side),
      )
    ),
    fc.integer({ min: 100, max: 2_500 }).map((d) =>
      new PairCommand<W>(`the link stalls ${d}ms`, () => true, (w) => {
        w.faults.push(`the link stalled ${d} ms`);
        tick(w, d);
      })
    ),
  ];
}

/**
 * The end: both sides have an outcome; without a fault both are done; the client is never done
 * while the server failed (the other way round, the done server's client failed after a fault:
 * its channels are dead); a side that failed sent its `failed` report.
 */
export function checkPairEnd(world: PairWorld): void {
  const { client, server } = world.sides;
  if (client.outcome === undefined || server.outcome === undefined) {
    failPair(world, "a side has no outcome");
  }
  if (world.faults.length === 0 && (client.outcome !== "done" || server.outcome !== "done")) {
    failPair(world, `no fault, yet client ${client.outcome} and server ${server.outcome}`);
  }
  if (client.outcome === "done" && server.outcome !== "done") {
    failPair(world, "client done, server failed");
  }
  for (const side of SIDES) {
    if (world.sides[side].outcome === "failed" && !world.sides[side].sentFailed) {
      failPair(world, `the ${side} failed without sending its \`failed\` report`);
    }
  }
}
