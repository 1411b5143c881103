/**
 * Conformance suite of the handshake machines, over the pure simulated host of
 * `src/core/handshake/sim.ts`. It takes the machines' factory, so any implementation of the four
 * roles can be checked; it imports nothing from Deno.
 *
 * What must hold, for both flows:
 * - with no faults, under any interleaving and any delays, both sides end established with
 *   paired channel maps;
 * - with faults at any step (refused, reset, killed, bad frame, duplicate, drop, stall), both
 *   sides end (established or failed with a reason) within the step bound, no descriptor or
 *   control block leaks, both established means paired channels, and when one side is
 *   established and the other not, the established side's channels already show the peer's end
 *   (no silent disagreement: the two-generals window is the only one left);
 * - after failure a machine stays failed, and a failed machine holds no descriptor;
 * - a well-formed message with one field changed on its way (`handshake_tamper.ts`) fails the
 *   side that checks or uses the value, at that step, with a typed reason, never established.
 *
 * @module
 */

import fc from "fast-check";
import type { HandshakeConfig } from "../src/core/handshake/config.ts";
import {
  createSimulation,
  FAULT_KINDS,
  goldenTranscript,
  runSimulation,
  type Side,
  type SimFlow,
  type SimOutcome,
  simPair,
  type Simulation,
} from "../src/core/handshake/sim.ts";
import type { HandshakeMachine, HandshakeRole } from "../src/core/handshake/types.ts";
import { defineProperty, type Suite } from "./_suite.ts";
import { expectClean, expectEstablished, failWith } from "./_handshake_outcome.ts";
import { tamperProperty } from "./handshake_tamper.ts";

/** Builds a machine for a role: the implementation under test. */
export type MachineFactory = (role: HandshakeRole, config: HandshakeConfig) => HandshakeMachine;

const WELL_KNOWN_PORT = 7000;
const FLOWS: readonly SimFlow[] = ["fs", "db"];

/** Picks from fast-check's list of choices, cycling, 0 once it is empty. */
function chooser(choices: readonly number[]): (n: number) => number {
  let next = 0;
  return (n) => choices.length === 0 ? 0 : choices[next++ % choices.length]! % n;
}

function faultArbitrary(steps: Record<SimFlow, Record<Side, string[]>>, flow: SimFlow) {
  return fc.record({
    kind: fc.constantFrom(...FAULT_KINDS),
    side: fc.constantFrom<Side>("server", "client"),
    index: fc.nat(),
  }).map(({ kind, side, index }) => {
    const list = steps[flow][side];
    return { kind, side, step: list[index % list.length]! };
  });
}

/**
 * The steps each side of each flow takes in a clean run (where faults can be placed). It runs
 * the machines under test, so a property computes it when it is built, never the suite: a
 * machine that throws then fails that property instead of the suite's construction.
 */
function stepsOf(factory: MachineFactory): Record<SimFlow, Record<Side, string[]>> {
  const of = (flow: SimFlow, side: Side) => [
    ...new Set(goldenTranscript(flow, factory).filter((l) => l.side === side).map((l) => l.step)),
  ];
  return {
    fs: { server: of("fs", "server"), client: of("fs", "client") },
    db: { server: of("db", "server"), client: of("db", "client") },
  };
}

/**
 * The handshake suite.
 *
 * @param factory builds the machine of a role
 * @returns the suite
 */
export function handshakeSuite(factory: MachineFactory): Suite {
  const pair = (flow: SimFlow, timeoutMs = 5000) =>
    simPair(flow, factory, { wellKnownPort: WELL_KNOWN_PORT, handshakeTimeoutMs: timeoutMs });
  const flow = fc.constantFrom(...FLOWS);
  return {
    name: "handshake",
    properties: [
      defineProperty(
        "with no faults, any interleaving and delays establish both sides on paired channels",
        { numRuns: 300 },
        () =>
          fc.property(
            flow,
            fc.integer(),
            fc.integer({ min: 0, max: 100 }),
            fc.array(fc.nat(), { maxLength: 80 }),
            (f, seed, delayMsMax, choices) =>
              expectEstablished(
                runSimulation(pair(f), { seed, delayMsMax, choose: chooser(choices) }),
              ),
          ),
      ),
      faultProperty(factory, pair),
      defineProperty(
        "a well-formed message with a field changed on its way fails the side that checks or uses it, at that step, typed",
        { numRuns: 300 },
        () => tamperProperty(factory),
      ),
      schedulerProperty(pair),
      modelProperty(factory, pair),
    ],
  };
}

function faultProperty(factory: MachineFactory, pair: (f: SimFlow, t?: number) => SimPairT) {
  return defineProperty(
    "with faults at any step both sides end, nothing leaks, and no disagreement is silent",
    { numRuns: 1000 },
    () => {
      const steps = stepsOf(factory);
      return fc.property(
        fc.constantFrom(...FLOWS).chain((f) =>
          fc.tuple(
            fc.constant(f),
            fc.array(faultArbitrary(steps, f), { minLength: 1, maxLength: 3 }),
          )
        ),
        fc.integer(),
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 50, max: 5000 }),
        ([f, faults], seed, delayMsMax, timeoutMs) => {
          const outcome = runSimulation(pair(f, timeoutMs), { seed, delayMsMax, faults });
          expectClean(outcome);
          for (const side of ["server", "client"] as const) {
            const end = outcome[side];
            if (!end.dead && end.status === "failed" && end.reason === undefined) {
              failWith(outcome, `${side} failed without a reason`);
            }
          }
        },
      );
    },
  );
}

type SimPairT = ReturnType<typeof simPair>;

/** Lets fast-check's scheduler decide which pending call completes next. */
async function runScheduled(
  simulation: Simulation,
  s: fc.Scheduler,
  beforeCall: (index: number) => void,
): Promise<SimOutcome> {
  let calls = 0;
  const scheduled = new Set<string>();
  const resolved: string[] = [];
  // Bounded: the simulation's own step bound ends poll().
  for (let keys = simulation.poll(); keys !== undefined; keys = simulation.poll()) {
    for (const key of keys) {
      if (scheduled.has(key)) continue;
      scheduled.add(key);
      s.schedule(Promise.resolve(key), key).then((k) => resolved.push(k));
    }
    let pick = resolved.findIndex((k) => keys!.includes(k));
    for (let waits = 0; pick < 0 && waits < 1000; waits++) {
      if (s.count() > 0) await s.waitOne();
      else await Promise.resolve();
      pick = resolved.findIndex((k) => keys!.includes(k));
    }
    if (pick < 0) throw new Error(`the scheduler gave none of ${keys.join(", ")}`);
    beforeCall(calls++);
    simulation.run(resolved.splice(pick, 1)[0]!);
  }
  return simulation.finish();
}

function schedulerProperty(pair: (f: SimFlow, t?: number) => SimPairT) {
  return defineProperty(
    "under fc.scheduler interleavings, with or without a peer killed, the rules hold",
    { numRuns: 200 },
    () =>
      fc.asyncProperty(
        fc.constantFrom(...FLOWS),
        fc.scheduler(),
        fc.option(fc.record({ side: fc.constantFrom<Side>("server", "client"), at: fc.nat(60) })),
        async (f, s, kill) => {
          const simulation = createSimulation(pair(f), { seed: 0, delayMsMax: 0 });
          let killed = false;
          const outcome = await runScheduled(simulation, s, (index) => {
            if (kill === null || index !== kill.at) return;
            simulation.kill(kill.side);
            killed = true;
          });
          if (!killed) expectEstablished(outcome);
          else expectClean(outcome);
        },
      ),
  );
}

interface Model {
  readonly terminal: Partial<Record<Side, string>>;
  killed: boolean;
  faulted: boolean;
  ended: boolean;
}

function checkInvariants(model: Model, simulation: Simulation): void {
  for (const side of ["server", "client"] as const) {
    const machine = simulation.machine(side);
    const open = simulation.openDescriptors(side).join(",");
    const before = model.terminal[side];
    if (before !== undefined && machine.status !== before) {
      throw new Error(`${side} left ${before} for ${machine.status}`);
    }
    if (machine.status === "failed" || machine.status === "established") {
      model.terminal[side] = machine.status;
    }
    const dead = simulation.isDead(side);
    if ((dead || machine.status === "failed") && open !== "") {
      throw new Error(`${side} (${dead ? "dead" : "failed"}) still holds [${open}]`);
    }
    if (!dead && machine.status === "established") {
      const kept = Object.values(machine.channels ?? {}).sort((a, b) => a - b).join(",");
      if (open !== kept) throw new Error(`${side} holds [${open}], channels [${kept}]`);
    }
  }
}

type Real = Simulation;

class RunCall implements fc.Command<Model, Real> {
  constructor(readonly pick: number) {}
  check(model: Readonly<Model>): boolean {
    return !model.ended;
  }
  run(model: Model, simulation: Real): void {
    const keys = simulation.poll();
    if (keys === undefined) model.ended = true;
    else simulation.run(keys[this.pick % keys.length]!);
    checkInvariants(model, simulation);
  }
  toString(): string {
    return `run(${this.pick})`;
  }
}

class Kill implements fc.Command<Model, Real> {
  constructor(readonly side: Side) {}
  check(model: Readonly<Model>): boolean {
    return !model.killed && !model.ended;
  }
  run(model: Model, simulation: Real): void {
    simulation.kill(this.side);
    model.killed = true;
    checkInvariants(model, simulation);
  }
  toString(): string {
    return `kill(${this.side})`;
  }
}

class Inject implements fc.Command<Model, Real> {
  constructor(readonly fault: Parameters<Simulation["inject"]>[0]) {}
  check(model: Readonly<Model>): boolean {
    return !model.ended;
  }
  run(model: Model, simulation: Real): void {
    simulation.inject(this.fault);
    model.faulted = true;
  }
  toString(): string {
    return `inject(${this.fault.kind} ${this.fault.side} ${this.fault.step})`;
  }
}

function modelProperty(factory: MachineFactory, pair: (f: SimFlow, t?: number) => SimPairT) {
  return defineProperty(
    "model-based: machines never leave an end state, never hold descriptors they should not",
    { numRuns: 300 },
    () => {
      const steps = stepsOf(factory);
      return fc.property(
        fc.constantFrom(...FLOWS).chain((f) =>
          fc.tuple(
            fc.constant(f),
            fc.commands([
              fc.nat().map((pick) => new RunCall(pick)),
              fc.nat().map((pick) => new RunCall(pick)),
              fc.nat().map((pick) => new RunCall(pick)),
              fc.constantFrom<Side>("server", "client").map((side) => new Kill(side)),
              faultArbitrary(steps, f).map((fault) => new Inject(fault)),
            ], { maxCommands: 120 }),
          )
        ),
        fc.integer({ min: 0, max: 30 }),
        ([f, commands], delayMsMax) => {
          const simulation = createSimulation(pair(f), { seed: delayMsMax, delayMsMax });
          const model: Model = { terminal: {}, killed: false, faulted: false, ended: false };
          fc.modelRun(() => ({ model, real: simulation }), commands);
          for (let keys = simulation.poll(); keys !== undefined; keys = simulation.poll()) {
            simulation.run(keys[0]!);
            checkInvariants(model, simulation);
          }
          const outcome = simulation.finish();
          if (model.killed || model.faulted) expectClean(outcome);
          else expectEstablished(outcome);
        },
      );
    },
  );
}
