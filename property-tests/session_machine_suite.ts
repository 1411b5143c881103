/**
 * Model-based properties of the backup server's session machine
 * (`src/core/session/backup_server_machine.ts`): `fc.commands` runs feed it the client's
 * control messages as a lossy, reordering, faulting link delivers them (any message, in any
 * order, some twice or never, unexpected ones included), the pump's results only after the
 * machine asked for them, clock ticks with time as input, and failures. After every step:
 *
 * - it commits only after the data ended AND the manifest's lines were written;
 * - nothing after an end state; `failed` only after `abort` and the client-report wait;
 * - the tick rows fire as stated: a silent client (`peerSilentMs`) fails a live session, an idle
 *   server (`keepaliveMs`) sends a keepalive;
 * - every run ends: the pump's outstanding results and ticks drive it to `done` or `failed`
 *   within a bounded number of steps.
 *
 * The suite takes the machine as an argument, so a mutant can be run through it.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type {
  BackupServerAction,
  BackupServerEvent,
  BackupServerMessage,
  BackupServerTimes,
} from "../src/core/session/backup_server_machine.ts";

/** The machine under test, as the suite drives it. */
export interface ServerMachineUnderTest {
  readonly state: string;
  readonly ended: boolean;
  handle(event: BackupServerEvent): BackupServerAction[];
}

/** Makes a machine under test. */
export type ServerMachineFactory = (
  times: BackupServerTimes,
  startMs: number,
) => ServerMachineUnderTest;

const TIMES: BackupServerTimes = { keepaliveMs: 100, peerSilentMs: 1_000 };
/** Steps the drain may take to end a run (a bound, not a timing). */
const DRAIN_STEPS_MAX = 50;

/** What the suite knows of the run so far. */
interface Model {
  nowMs: number;
  lastHeardMs: number;
  lastSentMs: number;
  dataEnded: boolean;
  manifestWritten: boolean;
  aborted: boolean;
  ended: boolean;
  /** Results the pump owes the machine (it asked for them). */
  owed: Set<"opened" | "committed" | "client-report">;
  snapshotId: string;
  /** The snapshot opened (the pump's data channel runs). */
  opened: boolean;
  /** The pump's once-only results already given. */
  given: Set<string>;
}

type Real = { machine: ServerMachineUnderTest };

/** Feeds one event and checks the actions against the model. */
function step(model: Model, real: Real, event: BackupServerEvent): void {
  const live = !model.ended && !model.aborted;
  const committing = live && model.owed.has("committed");
  const actions = real.machine.handle(event);
  const kinds = actions.map((a) => a.type);
  const where = `${event.type} at ${event.atMs} ms -> [${kinds.join(", ")}]`;
  if (model.ended && actions.length > 0) throw new Error(`actions after the end: ${where}`);
  if (event.type === "message" || event.type === "heard") model.lastHeardMs = event.atMs;
  if (event.type === "data-end") model.dataEnded = true;
  if (event.type === "manifest-written") model.manifestWritten = true;
  if (event.type !== "tick") model.owed.delete(event.type as "opened");
  if (event.type === "commit-failed") model.owed.delete("committed");
  if (event.type === "opened") model.opened = true;
  model.given.add(event.type);
  if (kinds.includes("commit") && !(model.dataEnded && model.manifestWritten)) {
    throw new Error(
      `committed with data ended ${model.dataEnded}, manifest written ${model.manifestWritten}: ${where}`,
    );
  }
  if (kinds.includes("failed") && !model.aborted) throw new Error(`failed before abort: ${where}`);
  if (committing && event.type === "failure" && kinds.includes("abort")) {
    throw new Error(`a broken channel failed a session that was committing: ${where}`);
  }
  if (
    event.type === "tick" && live && !committing &&
    event.atMs - model.lastHeardMs >= TIMES.peerSilentMs
  ) {
    if (!kinds.includes("abort")) {
      throw new Error(`a silent client did not fail the session: ${where}`);
    }
  } else if (
    event.type === "tick" && live && event.atMs - model.lastSentMs >= TIMES.keepaliveMs &&
    !kinds.includes("send-keepalive")
  ) {
    throw new Error(`no keepalive ${TIMES.keepaliveMs} ms after the last one: ${where}`);
  }
  if (kinds.includes("send-keepalive")) model.lastSentMs = event.atMs;
  if (kinds.includes("open")) model.owed.add("opened");
  if (kinds.includes("commit")) model.owed.add("committed");
  if (kinds.includes("await-client-report")) {
    model.aborted = true;
    model.owed.clear(); // an aborted snapshot's results no longer come
    model.owed.add("client-report");
  }
  if (kinds.includes("done") || kinds.includes("failed")) model.ended = true;
  if (model.ended !== real.machine.ended) throw new Error(`end states disagree: ${where}`);
}

/** The pump's result for one owed request. */
function owedEvent(model: Model, owed: string, atMs: number, reason?: string): BackupServerEvent {
  if (owed === "opened") {
    return { type: "opened", atMs, snapshotId: model.snapshotId, hasParent: true };
  }
  if (owed === "committed") return { type: "committed", atMs, snapshotId: model.snapshotId };
  if (owed === "commit-failed") return { type: "commit-failed", atMs, reason: "disk full" };
  return { type: "client-report", atMs, reason };
}

/** What the link delivers: mostly what a working client sends, now and then a faulty frame. */
const message = fc.oneof(
  { weight: 3, arbitrary: fc.constant<BackupServerMessage>({ type: "hello" }) },
  { weight: 3, arbitrary: fc.constant<BackupServerMessage>({ type: "progress" }) },
  {
    weight: 3,
    arbitrary: fc.integer({ min: 0, max: 200 }).map((upTo): BackupServerMessage => ({
      type: "more",
      of: "parent",
      upTo,
    })),
  },
  {
    weight: 3,
    arbitrary: fc.boolean().map((last): BackupServerMessage => ({
      type: "part",
      of: "manifest",
      last,
    })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<BackupServerMessage>(
      { type: "part", of: "members", last: true },
      { type: "junk" },
    ),
  },
);

/** One command: an event after `delayMs`, when the model allows it. */
class EventCommand implements fc.Command<Model, Real> {
  constructor(
    readonly delayMs: number,
    readonly make: (model: Model, atMs: number) => BackupServerEvent | undefined,
    readonly label: string,
  ) {}
  check(model: Readonly<Model>): boolean {
    return !model.ended && this.make(model as Model, model.nowMs + this.delayMs) !== undefined;
  }
  run(model: Model, real: Real): void {
    model.nowMs += this.delayMs;
    step(model, real, this.make(model, model.nowMs)!);
  }
  toString(): string {
    return `${this.label}+${this.delayMs}ms`;
  }
}

/**
 * Mostly short gaps, now and then one past the keepalive or the silence rule (of times with
 * `keepaliveMs` 100 and `peerSilentMs` 1 000; the restore server suite uses it too).
 */
export const delay: fc.Arbitrary<number> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 60 }) },
  { weight: 2, arbitrary: fc.integer({ min: 61, max: 150 }) },
  { weight: 1, arbitrary: fc.integer({ min: 900, max: 1_200 }) },
);

const messageCommand = fc.tuple(delay, message).map(([d, m]) =>
  new EventCommand(d, (_, atMs) => ({ type: "message", atMs, message: m }), `message(${m.type})`)
);

const commands = [
  messageCommand,
  messageCommand, // twice: the link's traffic is most of a session
  delay.map((d) => new EventCommand(d, (_, atMs) => ({ type: "heard", atMs }), "heard")),
  delay.map((d) => new EventCommand(d, (_, atMs) => ({ type: "tick", atMs }), "tick")),
  // The pump's own results come once each, and only after the snapshot opened.
  ...(["data-end", "manifest-written", "parent-sent"] as const).map((type) =>
    delay.map((d) =>
      new EventCommand(
        d,
        (model, atMs) => model.opened && !model.given.has(type) ? { type, atMs } : undefined,
        type,
      )
    )
  ),
  // A socket or the repository fails now and then (one draw in four).
  fc.tuple(delay, fc.integer({ min: 0, max: 3 })).map(([d, draw]) =>
    new EventCommand(
      d,
      (_, atMs) => draw === 0 ? { type: "failure", atMs, reason: "socket broke" } : undefined,
      "failure",
    )
  ),
  fc.tuple(delay, fc.constantFrom("opened", "committed", "commit-failed", "client-report")).map((
    [d, owed],
  ) =>
    new EventCommand(
      d,
      (model, atMs) => {
        const asked = owed === "commit-failed" ? "committed" : owed;
        return model.owed.has(asked as "opened") ? owedEvent(model, owed, atMs, "c") : undefined;
      },
      owed,
    )
  ),
];

/**
 * Drives a run to its end: the link heals, so the pump gives what it owes (results asked for,
 * then the data's and the manifest's ends once the snapshot is open), else the clock runs past
 * the silence rule.
 */
function drain(model: Model, real: Real): void {
  for (let i = 0; i < DRAIN_STEPS_MAX && !model.ended; i++) {
    model.nowMs += 1;
    const [owed] = model.owed;
    const end = (["data-end", "manifest-written"] as const).find((type) =>
      model.opened && !model.aborted && !model.given.has(type)
    );
    let event: BackupServerEvent;
    if (owed !== undefined) event = owedEvent(model, owed, model.nowMs);
    else if (end !== undefined) event = { type: end, atMs: model.nowMs };
    else {
      model.nowMs += TIMES.peerSilentMs;
      event = { type: "tick", atMs: model.nowMs };
    }
    step(model, real, event);
  }
  if (!model.ended) {
    throw new Error(`not ended after ${DRAIN_STEPS_MAX} drain steps, in ${real.machine.state}`);
  }
}

/**
 * The session machine suite.
 *
 * @param create makes the machine under test
 * @param name names the implementation
 * @returns the suite
 */
export function sessionMachineSuite(create: ServerMachineFactory, name = "lanfree"): Suite {
  return {
    name: `backup server session machine (${name})`,
    properties: [
      defineProperty(
        "over a lossy, reordering, faulting link it commits only when whole, keeps time and always ends",
        { numRuns: 300 },
        () =>
          fc.property(fc.commands(commands, { maxCommands: 60 }), (cmds) => {
            const model: Model = {
              nowMs: 0,
              lastHeardMs: 0,
              lastSentMs: 0,
              dataEnded: false,
              manifestWritten: false,
              aborted: false,
              ended: false,
              owed: new Set(),
              snapshotId: "s1",
              opened: false,
              given: new Set(),
            };
            const real: Real = { machine: create(TIMES, 0) };
            fc.modelRun(() => ({ model, real }), cmds);
            drain(model, real);
          }),
      ),
    ],
  };
}
