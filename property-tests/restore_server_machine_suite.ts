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
 * - a failure in a live state ends it at once, `failed` with that failure as its reason;
 * - the tick rows fire as stated: a silent agent (`peerSilentMs`) fails a live session, and a
 *   keepalive goes out `keepaliveMs` after the last one;
 * - every run ends: the agent's end request (or the silence rule) ends it within a bounded
 *   number of steps once the link heals.
 *
 * @module
 */

import fc from "fast-check";
import type { Suite } from "./_suite.ts";
import type {
  RestoreServerAction,
  RestoreServerEvent,
} from "../src/core/session/restore_server_machine.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";
import {
  delay,
  MachineHarness,
  type MachineModel,
  type MachineUnderTest,
} from "./_machine_harness.ts";

/** The machine under test, as the suite drives it. */
export type RestoreServerUnderTest = MachineUnderTest<RestoreServerEvent, RestoreServerAction>;

const ARCHIVES = ["a1", "a2", "a3"] as const;

type Owed = "opened" | "manifest-sent" | "archive-sent";

interface Model extends MachineModel<RestoreServerEvent, RestoreServerAction> {
  /** Results the pump owes the machine. */
  owed: Set<Owed>;
  manifestSent: boolean;
  streaming: boolean;
  served: Set<string>;
  /** A request joined and not yet served (`undefined`: none): its archive, `null` for the end. */
  waiting: string | null | undefined;
}

function fail(model: Model, text: string): never {
  return harness.fail(model, text);
}

function observe(
  model: Model,
  event: Unstamped<RestoreServerEvent>,
  actions: readonly RestoreServerAction[],
): void {
  model.owed.delete(event.type as Owed);
  if (event.type === "request") model.waiting = event.archive;
  if (event.type === "manifest-sent") model.manifestSent = true;
  if (event.type === "archive-sent") model.streaming = false;
  for (const action of actions) apply(model, action);
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
    case "done":
      if (model.waiting !== null) fail(model, "done without an end request");
      return;
  }
}

/** The pump's result for one owed request. */
function owedEvent(owed: Owed): Unstamped<RestoreServerEvent> {
  return owed === "opened" ? { type: "opened", archives: [...ARCHIVES] } : { type: owed };
}

/** The link heals: the pump gives what it owes, the agent asks for the end. */
function healed(model: Model): Unstamped<RestoreServerEvent> | undefined {
  const [owed] = model.owed;
  if (owed !== undefined) return owedEvent(owed);
  return model.waiting === undefined ? { type: "request", archive: null } : undefined;
}

const harness = new MachineHarness<Model, RestoreServerEvent, RestoreServerAction>({
  heard: ["message", "heard"],
  silenceAction: "failed",
  silenceFailure: "a silent agent did not fail the restore",
  drainStepsMax: 60,
  // A failure in any live state ends the restore at once, failed with it as the cause.
  failureRule: { action: "failed" },
  observe,
  healed,
});

const commands = [
  // A joined request: an archive of the snapshot, another one, or the end (`null`).
  ...[0, 1].map(() =>
    fc.tuple(delay, fc.constantFrom<string | null>(...ARCHIVES, "elsewhere", null)).map((
      [d, archive],
    ) =>
      harness.command(
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
    harness.command(`message(${type})`, d, () => ({
      type: "message",
      message: type === "part"
        ? { type: "part", of: "members" }
        : type === "failed"
        ? { type: "failed", message: "the agent failed" }
        : { type },
    }))
  ),
  harness.delayed("heard", () => ({ type: "heard" })),
  harness.delayed("tick", () => ({ type: "tick" })),
  // The pump's results, each once it is owed (one command each: they are most of a session).
  ...(["opened", "manifest-sent", "archive-sent"] as const).map((owed) =>
    harness.delayed(owed, (model) => model.owed.has(owed) ? owedEvent(owed) : undefined)
  ),
  fc.tuple(delay, fc.integer({ min: 0, max: 5 })).map(([d, draw]) =>
    harness.command(
      "failure",
      d,
      () => draw === 0 ? { type: "failure", reason: "socket broke" } : undefined,
    )
  ),
];

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
  return harness.suite(
    `restore server session machine (${name})`,
    "over a faulty agent and link it streams each archive of the snapshot at most once, keeps time and always ends",
    commands,
    create,
    () => ({
      owed: new Set(["opened"]),
      manifestSent: false,
      streaming: false,
      served: new Set(),
      waiting: undefined,
    }),
  );
}
