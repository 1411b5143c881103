/**
 * The harness the three single-machine session suites share (`session_machine_suite.ts` for the
 * backup server, `restore_server_machine_suite.ts`, `restore_client_machine_suite.ts`): one
 * machine fed by `fc.commands` runs, each command an event after a drawn delay, with time as
 * input. What is common lives here: the model's clock and time-rule fields, the step that feeds
 * an event and checks what every session machine owes (nothing after an end; the tick rows: a
 * silent peer fails a live session, a keepalive goes out `keepaliveMs` after the last one; the
 * model's end agrees with the machine's), the command, the drain that ends every run once the
 * link heals, the property, and the replay print (a failure names the last steps of the path).
 * Each suite keeps what is its own: its model's other fields, what it checks of each event and
 * action, its commands and what a healed link gives next.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";

/** The machine under test, as a suite drives it. */
export interface MachineUnderTest<E, A> {
  readonly state: string;
  readonly ended: boolean;
  handle(event: E): A[];
}

/** The time rules of the machine suites (a keepalive each 100 ms, silence fails at 1 s). */
export const MACHINE_TIMES: SessionTimes = { keepaliveMs: 100, peerSilentMs: 1_000 };

/** Path steps a failure prints. */
const PATH_SHOWN = 20;

/**
 * Mostly short gaps, now and then one past the keepalive or the silence rule (of
 * {@link MACHINE_TIMES}).
 */
export const delay: fc.Arbitrary<number> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 60 }) },
  { weight: 2, arbitrary: fc.integer({ min: 61, max: 150 }) },
  { weight: 1, arbitrary: fc.integer({ min: 900, max: 1_200 }) },
);

/** What every machine suite's model holds: the clock, the time rules' marks, the end, the path. */
export interface MachineModel<E, A> {
  nowMs: number;
  lastHeardMs: number;
  lastKeepaliveMs: number;
  ended: boolean;
  path: string[];
  /** The reason of the first `failure` event the machine took in a live state (the cause). */
  failureCause?: string;
  readonly machine: MachineUnderTest<E, A>;
}

/** The base fields of a fresh model over `machine`. */
export function newMachineModel<E, A>(machine: MachineUnderTest<E, A>): MachineModel<E, A> {
  return { nowMs: 0, lastHeardMs: 0, lastKeepaliveMs: 0, ended: false, path: [], machine };
}

/** Fails the run with the last steps of its path. */
export function failMachine(model: { readonly path: readonly string[] }, text: string): never {
  throw new Error(`${text}\n  after: ${model.path.slice(-PATH_SHOWN).join(" ; ")}`);
}

/** What a suite tells the harness about its machine. */
export interface MachineSpec<M extends MachineModel<E, A>, E extends { type: string }, A> {
  /** The event types by which the machine hears its peer. */
  readonly heard: readonly string[];
  /** The action by which the machine fails a silent peer (`abort`, `failed`). */
  readonly silenceAction: string;
  /** Says who is silent and what fails: "a silent agent did not fail the restore". */
  readonly silenceFailure: string;
  /** Steps the drain may take to end a run (a bound, not a timing). */
  readonly drainStepsMax: number;
  /**
   * Which time rules bind before this event (both by default, while the model is not ended):
   * a machine that aborted, or is committing, may be exempt.
   */
  timeRules?(model: M): { readonly keepalive: boolean; readonly silence: boolean };
  /**
   * The failure rule of the contract (`docs/session.md`, "failure" rows): a `failure` event in
   * a live state gives `action` at once (`abort`, or `failed` for a machine that ends at once),
   * unless `exempt` (committing, or already failing: the model before the event); the
   * machine's `failed` then carries the failure's reason as its `reason` (the cause), and, with
   * `sendFailed`, comes with that action (the peer is told).
   */
  readonly failureRule: {
    readonly action: string;
    exempt?(model: M): boolean;
    readonly sendFailed?: string;
  };
  /** The suite's own checks and bookkeeping of one event and the actions it gave. */
  observe(model: M, event: Unstamped<E>, actions: readonly A[]): void;
  /** What a healed link and pump give next; `undefined`: the clock runs past the silence rule. */
  healed(model: M): Unstamped<E> | undefined;
}

/** One command: an event after `delayMs`, when the model allows it (`make` gives one). */
export class MachineCommand<M extends MachineModel<E, A>, E extends { type: string }, A>
  implements fc.Command<M, M> {
  constructor(
    readonly harness: MachineHarness<M, E, A>,
    readonly label: string,
    readonly delayMs: number,
    readonly make: (model: M) => Unstamped<E> | undefined,
  ) {}
  check(model: Readonly<M>): boolean {
    return !model.ended && this.make(model as M) !== undefined;
  }
  run(model: M): void {
    model.nowMs += this.delayMs;
    model.path.push(this.toString());
    this.harness.step(model, this.make(model)!);
  }
  toString(): string {
    return `${this.label}+${this.delayMs}ms`;
  }
}

/** A suite's harness: its step, its commands, its drain and its property. */
export class MachineHarness<M extends MachineModel<E, A>, E extends { type: string }, A> {
  constructor(readonly spec: MachineSpec<M, E, A>) {}

  /** Feeds one event at the model's clock and checks the actions. */
  step(model: M, event: Unstamped<E>): void {
    const rules = model.ended
      ? { keepalive: false, silence: false }
      : this.spec.timeRules?.(model) ?? { keepalive: true, silence: true };
    const wasEnded = model.ended;
    const actions = model.machine.handle({ ...event, atMs: model.nowMs } as unknown as E);
    const kinds = actions.map((a) => (a as { type: string }).type);
    model.path.push(`${JSON.stringify(event)}@${model.nowMs} -> [${kinds.join(",")}]`);
    if (wasEnded && actions.length > 0) failMachine(model, "actions after the end");
    if (wasEnded) return;
    if (this.spec.heard.includes(event.type)) model.lastHeardMs = model.nowMs;
    if (event.type === "tick") this.checkTick(model, kinds, rules);
    this.checkFailure(model, event, actions, kinds);
    this.spec.observe(model, event, actions);
    if (kinds.includes("send-keepalive")) model.lastKeepaliveMs = model.nowMs;
    if (kinds.includes("done") || kinds.includes("failed")) model.ended = true;
    if (model.ended !== model.machine.ended) failMachine(model, "end states disagree");
  }

  private checkFailure(
    model: M,
    event: Unstamped<E>,
    actions: readonly A[],
    kinds: readonly string[],
  ): void {
    const rule = this.spec.failureRule;
    if (event.type === "failure" && !(rule.exempt?.(model) ?? false)) {
      if (!kinds.includes(rule.action)) {
        failMachine(model, `a failure in ${model.machine.state} gave no ${rule.action}`);
      }
      model.failureCause ??= (event as unknown as { reason: string }).reason;
    }
    const failed = actions.find((a) => (a as { type: string }).type === "failed") as
      | { reason?: string }
      | undefined;
    if (failed === undefined) return;
    if (model.failureCause !== undefined && failed.reason !== model.failureCause) {
      failMachine(model, `failed with ${failed.reason}, not the cause ${model.failureCause}`);
    }
    if (rule.sendFailed !== undefined && !kinds.includes(rule.sendFailed)) {
      failMachine(model, `failed without ${rule.sendFailed}: the peer is never told`);
    }
  }

  private checkTick(
    model: M,
    kinds: readonly string[],
    rules: { readonly keepalive: boolean; readonly silence: boolean },
  ): void {
    const { keepaliveMs, peerSilentMs } = MACHINE_TIMES;
    if (rules.silence && model.nowMs - model.lastHeardMs >= peerSilentMs) {
      if (!kinds.includes(this.spec.silenceAction)) failMachine(model, this.spec.silenceFailure);
    } else if (
      rules.keepalive && model.nowMs - model.lastKeepaliveMs >= keepaliveMs &&
      !kinds.includes("send-keepalive")
    ) failMachine(model, `no keepalive ${keepaliveMs} ms after the last one`);
  }

  /** A command of `make`'s event after `delayMs`. */
  command(
    label: string,
    delayMs: number,
    make: (model: M) => Unstamped<E> | undefined,
  ): MachineCommand<M, E, A> {
    return new MachineCommand(this, label, delayMs, make);
  }

  /** A command of `make`'s event after a drawn {@link delay}. */
  delayed(
    label: string,
    make: (model: M) => Unstamped<E> | undefined,
  ): fc.Arbitrary<MachineCommand<M, E, A>> {
    return delay.map((d) => this.command(label, d, make));
  }

  /**
   * The link heals: what the suite's `healed` gives next, else the clock runs past the silence
   * rule; the run must end within `drainStepsMax` steps.
   */
  drain(model: M): void {
    for (let i = 0; i < this.spec.drainStepsMax && !model.ended; i++) {
      model.nowMs += 1;
      const event = this.spec.healed(model);
      if (event !== undefined) this.step(model, event);
      else {
        model.nowMs += MACHINE_TIMES.peerSilentMs;
        this.step(model, { type: "tick" } as Unstamped<E>);
      }
    }
    if (!model.ended) {
      failMachine(
        model,
        `not ended after ${this.spec.drainStepsMax} drain steps, in ${model.machine.state}`,
      );
    }
  }

  /**
   * The property: a fresh model per run, the drawn commands, then the drain.
   *
   * @param commands the suite's commands
   * @param newModel a fresh model (with a fresh machine)
   * @param sizeMax whether `fc.commands` draws up to `maxCommands` (`size: "max"`)
   */
  property(
    commands: fc.Arbitrary<MachineCommand<M, E, A>>[],
    newModel: () => M,
    sizeMax = true,
  ): fc.IProperty<[Iterable<fc.Command<M, unknown>>]> {
    const options = sizeMax ? { maxCommands: 60, size: "max" as const } : { maxCommands: 60 };
    return fc.property(fc.commands(commands, options), (cmds) => {
      const model = newModel();
      fc.modelRun(() => ({ model, real: model }), cmds);
      this.drain(model);
    });
  }

  /** Fails the run with the last steps of its path. */
  fail(model: M, text: string): never {
    return failMachine(model, text);
  }

  /**
   * The suite of the one property, 300 runs unless the runner says otherwise.
   *
   * @param name names the suite and the implementation
   * @param property what must hold, as a sentence
   * @param commands the suite's commands
   * @param create makes the machine under test (with {@link MACHINE_TIMES}, from 0 ms)
   * @param fields the suite's own fields of a fresh model
   * @param sizeMax whether `fc.commands` draws up to `maxCommands` (`size: "max"`)
   */
  suite(
    name: string,
    property: string,
    commands: fc.Arbitrary<MachineCommand<M, E, A>>[],
    create: (times: SessionTimes, startMs: number) => MachineUnderTest<E, A>,
    fields: () => Omit<M, keyof MachineModel<E, A>>,
    sizeMax = true,
  ): Suite {
    const newModel = () => ({ ...newMachineModel(create(MACHINE_TIMES, 0)), ...fields() }) as M;
    return {
      name,
      properties: [
        defineProperty(
          property,
          { numRuns: 300 },
          () => this.property(commands, newModel, sizeMax),
        ),
      ],
    };
  }
}
