/**
 * Model-based properties of the backup server's session machine
 * (`src/core/session/backup_server_machine.ts`): `fc.commands` runs feed it the client's
 * control messages as a lossy, reordering, faulting link delivers them (any message, in any
 * order, some twice or never, unexpected ones included), the pump's results only after the
 * machine asked for them, clock ticks with time as input, and failures. After every step:
 *
 * - it commits only after the data ended AND the manifest's lines were written;
 * - a failure in a live state (not committing) aborts at once; `failed` names it and comes with
 *   `send-failed` (the client is told);
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
import type { Suite } from "./_suite.ts";
import type {
  BackupServerAction,
  BackupServerEvent,
  BackupServerMessage,
  BackupServerTimes,
} from "../src/core/session/backup_server_machine.ts";
import type { Unstamped } from "../src/core/session/session_clock.ts";
import {
  delay,
  MachineHarness,
  type MachineModel,
  type MachineUnderTest,
} from "./_machine_harness.ts";

export { delay } from "./_machine_harness.ts";

/** The machine under test, as the suite drives it. */
export type ServerMachineUnderTest = MachineUnderTest<BackupServerEvent, BackupServerAction>;

/** Makes a machine under test. */
export type ServerMachineFactory = (
  times: BackupServerTimes,
  startMs: number,
) => ServerMachineUnderTest;

type Owed = "opened" | "committed" | "client-report";

/** What the suite knows of the run so far. */
interface Model extends MachineModel<BackupServerEvent, BackupServerAction> {
  dataEnded: boolean;
  manifestWritten: boolean;
  aborted: boolean;
  /** Results the pump owes the machine (it asked for them). */
  owed: Set<Owed>;
  snapshotId: string;
  /** The snapshot opened (the pump's data channel runs). */
  opened: boolean;
  /** The pump's once-only results already given. */
  given: Set<string>;
}

/** Checks one event's actions against the model and notes what they ask for. */
function observe(
  model: Model,
  event: Unstamped<BackupServerEvent>,
  actions: readonly BackupServerAction[],
): void {
  const kinds = actions.map((a) => a.type);
  const fail = (text: string) => harness.fail(model, text);
  const committing = model.owed.has("committed") && !model.aborted;
  if (event.type === "data-end") model.dataEnded = true;
  if (event.type === "manifest-written") model.manifestWritten = true;
  if (event.type !== "tick") model.owed.delete(event.type as Owed);
  if (event.type === "commit-failed") model.owed.delete("committed");
  if (event.type === "opened") model.opened = true;
  model.given.add(event.type);
  if (kinds.includes("commit") && !(model.dataEnded && model.manifestWritten)) {
    fail(`committed with data ended ${model.dataEnded}, manifest written ${model.manifestWritten}`);
  }
  if (kinds.includes("failed") && !model.aborted) fail("failed before abort");
  if (committing && event.type === "failure" && kinds.includes("abort")) {
    fail("a broken channel failed a session that was committing");
  }
  if (kinds.includes("open")) model.owed.add("opened");
  if (kinds.includes("commit")) model.owed.add("committed");
  if (kinds.includes("await-client-report")) {
    model.aborted = true;
    model.owed.clear(); // an aborted snapshot's results no longer come
    model.owed.add("client-report");
  }
}

/** The pump's result for one owed request. */
function owedEvent(model: Model, owed: string, reason?: string): Unstamped<BackupServerEvent> {
  if (owed === "opened") return { type: "opened", snapshotId: model.snapshotId, hasParent: true };
  if (owed === "committed") return { type: "committed", snapshotId: model.snapshotId };
  if (owed === "commit-failed") return { type: "commit-failed", reason: "disk full" };
  return { type: "client-report", reason };
}

/**
 * What a healed link and pump give next: the results asked for, then the data's and the
 * manifest's ends once the snapshot is open.
 */
function healed(model: Model): Unstamped<BackupServerEvent> | undefined {
  const [owed] = model.owed;
  if (owed !== undefined) return owedEvent(model, owed);
  const end = (["data-end", "manifest-written"] as const).find((type) =>
    model.opened && !model.aborted && !model.given.has(type)
  );
  return end === undefined ? undefined : { type: end };
}

const harness = new MachineHarness<Model, BackupServerEvent, BackupServerAction>({
  heard: ["message", "heard"],
  silenceAction: "abort",
  silenceFailure: "a silent client did not fail the session",
  drainStepsMax: 50,
  // A failure aborts a live session (committing: the commit decides); failed tells the client.
  failureRule: {
    action: "abort",
    exempt: (model) => model.aborted || (model.owed.has("committed") && !model.aborted),
    sendFailed: "send-failed",
  },
  // An aborted session waits for the client's report; a committing one ignores silence.
  timeRules: (model) => ({
    keepalive: !model.aborted,
    silence: !model.aborted && !model.owed.has("committed"),
  }),
  observe,
  healed,
});

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

const messageCommand = fc.tuple(delay, message).map(([d, m]) =>
  harness.command(`message(${m.type})`, d, () => ({ type: "message", message: m }))
);

const commands = [
  messageCommand,
  messageCommand, // twice: the link's traffic is most of a session
  harness.delayed("heard", () => ({ type: "heard" })),
  harness.delayed("tick", () => ({ type: "tick" })),
  // The pump's own results come once each, and only after the snapshot opened.
  ...(["data-end", "manifest-written", "parent-sent"] as const).map((type) =>
    harness.delayed(type, (model) => model.opened && !model.given.has(type) ? { type } : undefined)
  ),
  // A socket or the repository fails now and then (one draw in four).
  fc.tuple(delay, fc.integer({ min: 0, max: 3 })).map(([d, draw]) =>
    harness.command(
      "failure",
      d,
      () => draw === 0 ? { type: "failure", reason: "socket broke" } : undefined,
    )
  ),
  fc.tuple(delay, fc.constantFrom("opened", "committed", "commit-failed", "client-report")).map((
    [d, owed],
  ) =>
    harness.command(owed, d, (model) => {
      const asked = owed === "commit-failed" ? "committed" : owed;
      return model.owed.has(asked as Owed) ? owedEvent(model, owed, "c") : undefined;
    })
  ),
];

/**
 * The session machine suite.
 *
 * @param create makes the machine under test
 * @param name names the implementation
 * @returns the suite
 */
export function sessionMachineSuite(create: ServerMachineFactory, name = "lanfree"): Suite {
  return harness.suite(
    `backup server session machine (${name})`,
    "over a lossy, reordering, faulting link it commits only when whole, keeps time and always ends",
    commands,
    create,
    () => ({
      dataEnded: false,
      manifestWritten: false,
      aborted: false,
      owed: new Set(),
      snapshotId: "s1",
      opened: false,
      given: new Set(),
    }),
    false,
  );
}
