/**
 * Model-based properties of the restore server's session machine
 * (`src/core/session/restore_server_machine.ts`): `fc.commands` runs feed it what a faulty agent
 * and link deliver (member requests for the snapshot's archives, for others, twice, or for the
 * end, in any order and at any time; progress; junk; the agent's `failed`), the pump's results
 * only after the machine asked for them, clock ticks with time as input, and failures. After
 * every step:
 *
 * - it streams only archives of the snapshot, each at most once, one at a time, never before the
 *   manifest went out;
 * - it is done only on the end request, and nothing comes after an end;
 * - the tick rows fire as stated: a silent agent (`peerSilentMs`) fails a live session, and a
 *   keepalive goes out `keepaliveMs` after the last one;
 * - every run ends: the agent's end request (or the silence rule) ends it within a bounded
 *   number of steps once the link heals.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import { delay } from "./session_machine_suite.ts";
import type {
  RestoreServerAction,
  RestoreServerEvent,
} from "../src/core/session/restore_server_machine.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";

/** The machine under test, as the suite drives it. */
export interface RestoreServerUnderTest {
  readonly state: string;
  readonly ended: boolean;
  handle(event: RestoreServerEvent): RestoreServerAction[];
}

const TIMES: SessionTimes = { keepaliveMs: 100, peerSilentMs: 1_000 };
const ARCHIVES = ["a1", "a2", "a3"] as const;
const DRAIN_STEPS_MAX = 60;

interface Model {
  nowMs: number;
  lastHeardMs: number;
  lastKeepaliveMs: number;
  machine: RestoreServerUnderTest;
  /** Results the pump owes the machine. */
  owed: Set<"opened" | "manifest-sent" | "archive-sent">;
  manifestSent: boolean;
  streaming: boolean;
  served: Set<string>;
  /** A request joined and not yet served (`undefined`: none): its archive, `null` for the end. */
  waiting: string | null | undefined;
  ended: boolean;
  path: string[];
}

function fail(model: Model, text: string): never {
  throw new Error(`${text}\n  after: ${model.path.slice(-20).join(" ; ")}`);
}

function step(model: Model, event: Unstamped<RestoreServerEvent>): void {
  const live = !model.ended;
  model.owed.delete(event.type as "opened");
  const actions = model.machine.handle({ ...event, atMs: model.nowMs } as RestoreServerEvent);
  const kinds = actions.map((a) => a.type);
  model.path.push(`${JSON.stringify(event)}@${model.nowMs} -> [${kinds.join(",")}]`);
  if (!live && actions.length > 0) fail(model, "actions after the end");
  if (!live) return;
  if (event.type === "message" || event.type === "heard") model.lastHeardMs = model.nowMs;
  if (event.type === "tick") {
    if (model.nowMs - model.lastHeardMs >= TIMES.peerSilentMs) {
      if (!kinds.includes("failed")) fail(model, "a silent agent did not fail the restore");
    } else if (
      model.nowMs - model.lastKeepaliveMs >= TIMES.keepaliveMs && !kinds.includes("send-keepalive")
    ) fail(model, `no keepalive ${TIMES.keepaliveMs} ms after the last one`);
  }
  if (event.type === "request") model.waiting = event.archive;
  if (event.type === "manifest-sent") model.manifestSent = true;
  if (event.type === "archive-sent") model.streaming = false;
  for (const action of actions) apply(model, action);
  if (model.ended !== model.machine.ended) fail(model, "end states disagree");
}

function apply(model: Model, action: RestoreServerAction) {
  switch (action.type) {
    case "send-manifest":
      model.owed.add("manifest-sent");
      return;
    case "stream-archive":
      if (!model.manifestSent) fail(model, "streamed an archive before the manifest went out");
      if (model.streaming) fail(model, "streamed two archives at once");
      if (!(ARCHIVES as readonly string[]).includes(action.archive)) {
        fail(model, `streamed ${action.archive}, which the snapshot does not use`);
      }
      if (model.served.has(action.archive)) fail(model, `streamed ${action.archive} twice`);
      if (action.archive !== model.waiting) fail(model, `streamed ${action.archive}, unasked`);
      model.served.add(action.archive);
      model.streaming = true;
      model.waiting = undefined;
      model.owed.add("archive-sent");
      return;
    case "send-keepalive":
      model.lastKeepaliveMs = model.nowMs;
      return;
    case "done":
      if (model.waiting !== null) fail(model, "done without an end request");
      model.ended = true;
      return;
    case "failed":
      model.ended = true;
      return;
  }
}

class RestoreCommand implements fc.Command<Model, Model> {
  constructor(
    readonly label: string,
    readonly delayMs: number,
    readonly make: (model: Model) => Unstamped<RestoreServerEvent> | undefined,
  ) {}
  check(model: Readonly<Model>): boolean {
    return !model.ended && this.make(model as Model) !== undefined;
  }
  run(model: Model): void {
    model.nowMs += this.delayMs;
    model.path.push(this.toString());
    step(model, this.make(model)!);
  }
  toString(): string {
    return `${this.label}+${this.delayMs}ms`;
  }
}

const commands = [
  // A joined request: an archive of the snapshot, another one, or the end (`null`).
  ...[0, 1].map(() =>
    fc.tuple(delay, fc.constantFrom<string | null>(...ARCHIVES, "elsewhere", null)).map((
      [d, archive],
    ) =>
      new RestoreCommand(
        `request(${archive})`,
        d,
        // The pump joins one request at a time (a part while one waits fails the session).
        (model) => model.waiting !== undefined ? undefined : { type: "request", archive },
      )
    )
  ),
  fc.tuple(
    delay,
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom("progress", "part") },
      { weight: 1, arbitrary: fc.constantFrom("failed", "junk") },
    ),
  ).map(([d, type]) =>
    new RestoreCommand(`message(${type})`, d, () => ({
      type: "message",
      message: type === "part"
        ? { type: "part", of: "members" }
        : type === "failed"
        ? { type: "failed", message: "the agent failed" }
        : { type },
    }))
  ),
  delay.map((d) => new RestoreCommand("heard", d, () => ({ type: "heard" }))),
  delay.map((d) => new RestoreCommand("tick", d, () => ({ type: "tick" }))),
  // The pump's results, each once it is owed (one command each: they are most of a session).
  ...(["opened", "manifest-sent", "archive-sent"] as const).map((owed) =>
    delay.map((d) =>
      new RestoreCommand(owed, d, (model) => {
        if (!model.owed.has(owed)) return undefined;
        return owed === "opened" ? { type: "opened", archives: [...ARCHIVES] } : { type: owed };
      })
    )
  ),
  fc.tuple(delay, fc.integer({ min: 0, max: 5 })).map(([d, draw]) =>
    new RestoreCommand(
      "failure",
      d,
      () => draw === 0 ? { type: "failure", reason: "socket broke" } : undefined,
    )
  ),
];

/** The link heals: the pump gives what it owes, the agent asks for the end. */
function drain(model: Model): void {
  for (let i = 0; i < DRAIN_STEPS_MAX && !model.ended; i++) {
    model.nowMs += 1;
    const [owed] = model.owed;
    if (owed !== undefined) {
      model.owed.delete(owed);
      step(model, owed === "opened" ? { type: "opened", archives: [...ARCHIVES] } : { type: owed });
    } else if (model.waiting === undefined) step(model, { type: "request", archive: null });
    else {
      model.nowMs += TIMES.peerSilentMs;
      step(model, { type: "tick" });
    }
  }
  if (!model.ended) fail(model, `not ended after ${DRAIN_STEPS_MAX} drain steps`);
}

/**
 * The restore server machine suite.
 *
 * @param create makes the machine under test
 * @param name names the implementation
 * @returns the suite
 */
export function restoreServerMachineSuite(
  create: (times: SessionTimes, startMs: number) => RestoreServerUnderTest,
  name = "lanfree",
): Suite {
  return {
    name: `restore server session machine (${name})`,
    properties: [
      defineProperty(
        "over a faulty agent and link it streams each archive of the snapshot at most once, keeps time and always ends",
        { numRuns: 300 },
        () =>
          fc.property(fc.commands(commands, { maxCommands: 60, size: "max" }), (cmds) => {
            const model: Model = {
              nowMs: 0,
              lastHeardMs: 0,
              lastKeepaliveMs: 0,
              machine: create(TIMES, 0),
              owed: new Set(["opened"]),
              manifestSent: false,
              streaming: false,
              served: new Set(),
              waiting: undefined,
              ended: false,
              path: [],
            };
            fc.modelRun(() => ({ model, real: model }), cmds);
            drain(model);
          }),
      ),
    ],
  };
}
