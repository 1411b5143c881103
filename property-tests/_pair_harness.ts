/**
 * The harness both pair suites share (`session_pair_suite.ts` for the backup machines,
 * `restore_pair_suite.ts` for the restore machines): two machines linked by the model of
 * `_pair_link.ts`, driven by `fc.commands`. What is common lives here: feeding a side an event
 * at the world's clock (the tick rule checked, the peer heard, the suite's actions applied, and
 * the client done only if the server is, with the same snapshot), the clock that ticks both
 * sides, each side's notice of a break, the common commands (a channel delivers its oldest frame
 * where the suite reads it, so channels overtake each other; a pump gives what it owes; the
 * clock moves on; the link's faults), the drain that ends every run once the link heals, and the
 * property (a fresh world per run, then the end rule). A failure prints the last steps of the
 * path; the runner prints the seed and the path that replay it. Each suite keeps what is its
 * own: its frames, its pumps' results, what each action does to the world, its own faults and
 * in which order a healed link gives things.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";
import type { MachineUnderTest } from "./_machine_harness.ts";
import {
  type Channel,
  CHANNELS,
  checkPairEnd,
  checkPairTick,
  failPair,
  linkFaults,
  type LinkFrame,
  newSideModel,
  PAIR_DRAIN_STEPS_MAX,
  PAIR_TIMES,
  PairCommand,
  type PairWorld,
  sendFrame,
  type Side,
  SIDES,
} from "./_pair_link.ts";

/** A machine as a pair suite drives it. */
export type PairedMachine<E, A> = MachineUnderTest<E, A>;

/** Makes the two machines under test. */
export interface MachinePair<CE, CA, SE, SA> {
  client(times: SessionTimes, startMs: number): PairedMachine<CE, CA>;
  server(times: SessionTimes, startMs: number): PairedMachine<SE, SA>;
}

/** What every pair world holds, with both machines typed. */
export interface MachinePairWorld<F extends LinkFrame, CE, CA, SE, SA> extends PairWorld<F> {
  client: PairedMachine<CE, CA>;
  server: PairedMachine<SE, SA>;
}

/** The fields every pair world starts with: both machines made, the clock at 0. */
export function newPairWorld<F extends LinkFrame, CE, CA, SE, SA>(
  machines: MachinePair<CE, CA, SE, SA>,
): MachinePairWorld<F, CE, CA, SE, SA> {
  return {
    nowMs: 0,
    client: machines.client(PAIR_TIMES, 0),
    server: machines.server(PAIR_TIMES, 0),
    frames: [],
    broken: false,
    breakOwed: new Set(),
    faults: [],
    sides: { client: newSideModel(), server: newSideModel() },
    path: [],
  };
}

/** What a suite tells the harness about one side. */
export interface PairSideSpec<W, E, A> {
  /** The event types by which the side hears its peer. */
  readonly heard: readonly string[];
  /**
   * The action by which the side fails: the tick rule looks for it on a silent peer, and the
   * failure rule on a `failure` event (both where `live` and `silenceFails` hold).
   */
  readonly silenceAction: string;
  /** Whether the tick rules bind before this event (default: the machine has not ended). */
  live?(world: W): boolean;
  /** Whether a silent peer must fail the side before this event (default: yes). */
  silenceFails?(world: W): boolean;
  /** What one action does to the world (a `send-keepalive` is the harness's). */
  apply(world: W, action: A, event: Unstamped<E>): void;
}

/** A pump: the results it can owe its machine, in the order a healed link gives them. */
export interface PairPump<W, O> {
  readonly owed: readonly O[];
  canGive(world: W, owed: O): boolean;
  give(world: W, owed: O): void;
}

/** What a suite tells the harness. */
export interface PairSpec<W extends PairWorld, CE, CA, SE, SA, CO, SO> {
  readonly client: PairSideSpec<W, CE, CA>;
  readonly server: PairSideSpec<W, SE, SA>;
  readonly clientPump: PairPump<W, CO>;
  readonly serverPump: PairPump<W, SO>;
  /** How the server got the snapshot the client's done must name ("committed", "sent"). */
  readonly serverSnapshotVerb: string;
  /** Whether the frames of `channel` toward `to` are read now (default: always). */
  reads?(world: W, to: Side, channel: Channel): boolean;
  /**
   * What a frame does on arrival, other than a keepalive (the side heard its peer) or the
   * server's `failed` report on the error channel (the client's `server-report`).
   */
  receive(world: W, frame: W["frames"][number]): void;
  /**
   * One step of the healed link other than a break's notice (a frame delivered, a pump's
   * result given), `pick` drawn for whatever races; false when there is none (the clock runs).
   */
  healedStep(world: W, pick: number): boolean;
}

/** A pair suite's harness: feeding, the clock, the common commands, the drain, the property. */
export class PairHarness<
  W extends MachinePairWorld<LinkFrame, CE, CA, SE, SA>,
  CE extends { type: string },
  CA extends { type: string },
  SE extends { type: string },
  SA extends { type: string },
  CO extends string,
  SO extends string,
> {
  constructor(readonly spec: PairSpec<W, CE, CA, SE, SA, CO, SO>) {}

  /** Feeds the client an event at the world's clock. */
  feedClient(world: W, event: Unstamped<CE>): void {
    this.feed(world, "client", world.client, this.spec.client, event);
    const { client, server } = world.sides;
    if (client.outcome !== "done") return;
    if (server.outcome !== "done") failPair(world, "the client is done while the server is not");
    if (client.snapshotId !== server.snapshotId) {
      failPair(
        world,
        `the client is done with another snapshot than the server ${this.spec.serverSnapshotVerb}`,
      );
    }
  }

  /** Feeds the server an event at the world's clock. */
  feedServer(world: W, event: Unstamped<SE>): void {
    this.feed(world, "server", world.server, this.spec.server, event);
  }

  private feed<E extends { type: string }, A extends { type: string }>(
    world: W,
    side: Side,
    machine: PairedMachine<E, A>,
    spec: PairSideSpec<W, E, A>,
    event: Unstamped<E>,
  ): void {
    const live = spec.live?.(world) ?? !machine.ended;
    const silenceFails = spec.silenceFails?.(world) ?? true;
    const actions = machine.handle({ ...event, atMs: world.nowMs } as unknown as E);
    const kinds = actions.map((a) => a.type);
    world.path.push(`${side} ${event.type}@${world.nowMs} -> [${kinds.join(",")}]`);
    if (event.type === "tick") {
      checkPairTick(world, side, kinds, live, silenceFails, spec.silenceAction);
    }
    // A failure (a break's notice) binds where a silent peer does: the side fails at once.
    if (event.type === "failure" && live && silenceFails && !kinds.includes(spec.silenceAction)) {
      failPair(world, `the ${side} gave no ${spec.silenceAction} on a failure`);
    }
    if (spec.heard.includes(event.type)) world.sides[side].lastHeardMs = world.nowMs;
    for (const action of actions) {
      if (action.type !== "send-keepalive") spec.apply(world, action, event);
      else {
        world.sides[side].lastKeepaliveMs = world.nowMs;
        const to = side === "client" ? "server" : "client";
        sendFrame(world, { to, channel: "keepalive", what: "keepalive" } as W["frames"][number]);
      }
    }
  }

  /** The clock moves on `delayMs` and both live sides tick. */
  tick(world: W, delayMs: number): void {
    world.nowMs += delayMs;
    if (!world.client.ended) this.feedClient(world, { type: "tick" } as Unstamped<CE>);
    if (!world.server.ended) this.feedServer(world, { type: "tick" } as Unstamped<SE>);
  }

  /** Gives `side` its owed failure of a break. */
  breakNotice(world: W, side: Side): void {
    world.breakOwed.delete(side);
    const failure: unknown = { type: "failure", reason: "connection reset" };
    if (side === "client") this.feedClient(world, failure as Unstamped<CE>);
    else this.feedServer(world, failure as Unstamped<SE>);
  }

  /**
   * Delivers the oldest frame of `channel` toward `to`, if there is one and it is read now: a
   * keepalive is heard, the server's `failed` report reaches the client, the suite's `receive`
   * takes the rest.
   */
  deliver(world: W, to: Side, channel: Channel): void {
    if (!(this.spec.reads?.(world, to, channel) ?? true)) return;
    const index = world.frames.findIndex((f) => f.to === to && f.channel === channel);
    if (index < 0) return;
    const [frame] = world.frames.splice(index, 1);
    if (channel === "keepalive") {
      if (to === "client") this.feedClient(world, { type: "heard" } as Unstamped<CE>);
      else this.feedServer(world, { type: "heard" } as Unstamped<SE>);
    } else if (channel === "error" && to === "client") {
      const report: unknown = { type: "server-report", reason: "the server failed" };
      this.feedClient(world, report as Unstamped<CE>);
    } else this.spec.receive(world, frame!);
  }

  /** Whether `channel` toward `to` holds a frame that is read now. */
  deliverable(world: W, to: Side, channel: Channel): boolean {
    return (this.spec.reads?.(world, to, channel) ?? true) &&
      world.frames.some((f) => f.to === to && f.channel === channel);
  }

  /** Every (side, channel) with a frame read now, channel by channel. */
  readyChannels(world: W): (readonly [Side, Channel])[] {
    return CHANNELS.flatMap((channel) =>
      SIDES.filter((to) => this.deliverable(world, to, channel)).map((to) => [to, channel] as const)
    );
  }

  /** Gives the first result `pump` can give now, in its order; false when none. */
  giveFirst<O>(world: W, pump: PairPump<W, O>): boolean {
    const owed = pump.owed.find((o) => pump.canGive(world, o));
    if (owed === undefined) return false;
    pump.give(world, owed);
    return true;
  }

  /** Healthy commands: a channel delivers, a pump gives, the clock moves on. */
  healthyCommands(): fc.Arbitrary<PairCommand<W>>[] {
    const { clientPump, serverPump } = this.spec;
    return [
      fc.tuple(fc.constantFrom(...SIDES), fc.constantFrom(...CHANNELS)).map(([to, channel]) =>
        new PairCommand<W>(
          `deliver ${channel} to ${to}`,
          (w) => this.deliverable(w, to, channel),
          (w) => this.deliver(w, to, channel),
        )
      ),
      fc.constantFrom(...clientPump.owed).map((owed) =>
        new PairCommand<W>(
          `client pump: ${owed}`,
          (w) => clientPump.canGive(w, owed),
          (w) => clientPump.give(w, owed),
        )
      ),
      fc.constantFrom(...serverPump.owed).map((owed) =>
        new PairCommand<W>(
          `server pump: ${owed}`,
          (w) => serverPump.canGive(w, owed),
          (w) => serverPump.give(w, owed),
        )
      ),
      fc.integer({ min: 1, max: 20 }).map((d) =>
        new PairCommand<W>(`tick+${d}ms`, () => true, (w) => this.tick(w, d))
      ),
    ];
  }

  /** The link's faults: it breaks, each side learns of it at its own time, it stalls. */
  linkFaults(): fc.Arbitrary<PairCommand<W>>[] {
    return linkFaults<W>((w, d) => this.tick(w, d), (w, side) => this.breakNotice(w, side));
  }

  /**
   * The link heals: breaks are noticed, then the suite's healed steps, else the clock runs; the
   * run must end within {@link PAIR_DRAIN_STEPS_MAX} steps.
   */
  drain(world: W, picks: readonly number[]): void {
    for (let step = 0; step < PAIR_DRAIN_STEPS_MAX; step++) {
      if (world.client.ended && world.server.ended) return;
      const [side] = world.breakOwed;
      if (side !== undefined) {
        this.breakNotice(world, side);
        continue;
      }
      if (this.spec.healedStep(world, picks[step % picks.length]!)) continue;
      this.tick(world, PAIR_TIMES.keepaliveMs / 2);
    }
    failPair(
      world,
      `not ended after ${PAIR_DRAIN_STEPS_MAX} drain steps: client ${world.client.state}, server ${world.server.state}`,
    );
  }

  /**
   * The property: a fresh world per run, the drawn commands, the drain, the end rule.
   *
   * @param commands the commands drawn
   * @param pickMax the largest pick the drain draws for its races
   * @param newWorld a fresh world (with fresh machines), given the drawn setup
   * @param setup drawn before the picks, when the world needs it (absent: no draw)
   */
  property<S>(
    commands: fc.Arbitrary<PairCommand<W>>[],
    pickMax: number,
    newWorld: (setup: S | undefined) => W,
    setup?: fc.Arbitrary<S>,
  ): fc.IProperty<unknown[]> {
    const picks = fc.array(fc.nat({ max: pickMax }), { minLength: 1, maxLength: 8 });
    const cmds = fc.commands(commands, { maxCommands: 80, size: "max" });
    const run = (drawn: S | undefined, p: number[], c: Iterable<fc.Command<W, W>>) => {
      const world = newWorld(drawn);
      fc.modelRun(() => ({ model: world, real: world }), c);
      this.drain(world, p);
      checkPairEnd(world);
    };
    return (setup === undefined
      ? fc.property(picks, cmds, (p, c) => run(undefined, p, c))
      : fc.property(setup, picks, cmds, run)) as fc.IProperty<unknown[]>;
  }

  /**
   * The suite of the two properties: over a healthy link (200 runs), and over a faulty one (300
   * runs), unless the runner says otherwise.
   *
   * @param name names the suite and the implementation
   * @param healthy what must hold over a healthy link
   * @param faulty what must hold over a faulty link
   * @param property builds the property, with or without faults
   */
  suite(
    name: string,
    healthy: string,
    faulty: string,
    property: (faults: boolean) => fc.IProperty<unknown[]>,
  ): Suite {
    return {
      name,
      properties: [
        defineProperty(healthy, { numRuns: 200 }, () => property(false)),
        defineProperty(faulty, { numRuns: 300 }, () => property(true)),
      ],
    };
  }
}
