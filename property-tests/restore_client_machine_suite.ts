/**
 * Model-based properties of the restore client's session machine
 * (`src/core/session/restore_client_machine.ts`): `fc.commands` runs feed it what a faulty
 * server and link deliver (control messages of either snapshot, in any order: `restore-begin`,
 * manifest parts, `restore-done`, junk, the server's `failed`; data records naming members asked
 * for, others, twice, or out of place), the pump's results only after the machine asked for them
 * (the manifest planned, the next archive the writer wants, a file written or refused, the
 * writer's end), clock ticks with time as input, and failures. After every step:
 *
 * - it asks only for archives of the plan, each at most once, one at a time, never before the
 *   manifest of the begun snapshot;
 * - it writes only members of the archive asked for, each at most once, one open at a time;
 * - it is done only after it sent the end request and the server's `restore-done` of the begun
 *   snapshot came, and nothing comes after an end;
 * - a failure in a live state ends it at once, `failed` with that failure as its reason;
 * - the tick rows fire as stated: a silent server (`peerSilentMs`) fails a live session, and a
 *   keepalive goes out `keepaliveMs` after the last one;
 * - every run ends: once the link heals (the server streams what was asked, the writer goes on,
 *   the server answers the end) it ends within a bounded number of steps.
 *
 * @module
 */

import fc from "fast-check";
import type { Suite } from "./_suite.ts";
import type {
  RestoreClientAction,
  RestoreClientEvent,
  RestoreClientRecord,
} from "../src/core/session/restore_client_machine.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";
import {
  delay,
  MachineHarness,
  type MachineModel,
  type MachineUnderTest,
} from "./_machine_harness.ts";

/** The machine under test, as the suite drives it. */
export type RestoreClientUnderTest = MachineUnderTest<RestoreClientEvent, RestoreClientAction>;

/** The plan: each archive and how many of its members the writer asks for. */
const PLAN: Readonly<Record<string, number>> = { a1: 2, a2: 1 };

type Owed = "manifest" | "archive-wanted" | "written" | "restored";

interface Model extends MachineModel<RestoreClientEvent, RestoreClientAction> {
  /** What the pump owes the machine. */
  owed: Set<Owed>;
  begun: string | undefined;
  manifestOf: string | undefined;
  /** Archives asked for, the one streaming, its members named and the one open. */
  asked: Set<string>;
  archive: string | undefined;
  named: Set<number>;
  open: number | undefined;
  /** The open member's pieces ended (its writer may finish). */
  memberEnded: boolean;
  skipping: boolean;
  sentEnd: boolean;
}

function fail(model: Model, text: string): never {
  return harness.fail(model, text);
}

/** The suite's checks of one event and the actions it gave. */
function observeStep(
  model: Model,
  event: Unstamped<RestoreClientEvent>,
  actions: readonly RestoreClientAction[],
): void {
  observe(model, event);
  for (const action of actions) apply(model, action, event);
}

/** What the event tells the model, whatever the machine does with it. */
function observe(model: Model, event: Unstamped<RestoreClientEvent>): void {
  if (event.type === "message" && event.message.type === "restore-begin" && !model.begun) {
    model.begun = (event.message as { snapshot: string }).snapshot;
  }
  if (event.type === "manifest") model.manifestOf = event.snapshotId;
  model.owed.delete((event.type === "write-failed" ? "written" : event.type) as Owed);
}

function apply(model: Model, action: RestoreClientAction, event: Unstamped<RestoreClientEvent>) {
  switch (action.type) {
    case "take-manifest-part":
      model.owed.add("manifest");
      return;
    case "write-target":
      if (model.manifestOf === undefined || model.manifestOf !== model.begun) {
        fail(model, `wrote the target from manifest ${model.manifestOf}, begun ${model.begun}`);
      }
      return wantNext(model);
    case "request-archive":
      return requested(model, action.archive);
    case "write-member":
      return opened(model, action.index, event);
    case "end-member":
      model.memberEnded = true;
      model.owed.add("written");
      return;
    case "skip-member":
      model.skipping = true;
      return;
    case "list-problem":
      if (model.open === action.index) model.open = undefined;
      model.skipping = false;
      return;
    case "report-progress":
      model.open = undefined;
      return;
    case "archive-done":
      if (model.open !== undefined) fail(model, `archive ended inside member ${model.open}`);
      model.archive = undefined;
      return wantNext(model);
    case "send-end":
      model.sentEnd = true;
      return;
    case "done":
      if (!model.sentEnd) fail(model, "done before the end request went out");
      if (action.snapshotId !== model.begun) fail(model, `done with ${action.snapshotId}`);
      return;
  }
}

/** The writer wants the next archive of the plan, or is through. */
function wantNext(model: Model): void {
  const left = Object.keys(PLAN).filter((a) => !model.asked.has(a));
  model.owed.add(left.length > 0 ? "archive-wanted" : "restored");
}

function requested(model: Model, archive: string): void {
  if (model.manifestOf !== model.begun) fail(model, "asked for an archive before the manifest");
  if (!(archive in PLAN)) fail(model, `asked for ${archive}, which the plan does not read`);
  if (model.asked.has(archive)) fail(model, `asked for ${archive} twice`);
  if (model.archive !== undefined) {
    fail(model, `asked for ${archive} while ${model.archive} streams`);
  }
  model.asked.add(archive);
  model.archive = archive;
  model.named = new Set();
}

function opened(model: Model, index: number, event: Unstamped<RestoreClientEvent>): void {
  const named = event.type === "record" ? event.record.index : undefined;
  if (model.archive === undefined) fail(model, `wrote member ${index} outside an archive`);
  if (index !== named || index < 0 || index >= PLAN[model.archive]!) {
    fail(model, `wrote member ${index} of ${model.archive}, which was not asked for`);
  }
  if (model.named.has(index)) fail(model, `wrote member ${index} of ${model.archive} twice`);
  if (model.open !== undefined) fail(model, `opened ${index} while ${model.open} is open`);
  model.named.add(index);
  model.open = index;
  model.memberEnded = false;
}

const harness = new MachineHarness<Model, RestoreClientEvent, RestoreClientAction>({
  heard: ["message", "heard", "record"],
  silenceAction: "failed",
  silenceFailure: "a silent server did not fail the restore",
  drainStepsMax: 80,
  // A failure in any live state ends the restore at once, failed with it as the cause.
  failureRule: { action: "failed" },
  observe: observeStep,
  healed: (model) => healed(model),
});

const MESSAGES: Record<string, Record<string, unknown>> = {
  "begin(s1)": { type: "restore-begin", snapshot: "s1" },
  "begin(s2)": { type: "restore-begin", snapshot: "s2" },
  "manifest part": { type: "part", of: "manifest" },
  "done(s1)": { type: "restore-done", snapshot: "s1" },
  "done(s2)": { type: "restore-done", snapshot: "s2" },
  "junk": { type: "junk" },
  "failed": { type: "failed", message: "the server failed" },
};

const RECORDS: readonly RestoreClientRecord[] = [
  ...[0, 1, 2].flatMap((index) =>
    (["head", "end", "problem"] as const).map((kind) => ({ kind, index }))
  ),
  { kind: "piece" },
  { kind: "archive-end" },
];

function results(): fc.Arbitrary<ReturnType<typeof harness.command>>[] {
  const result = (owed: Owed, make: (model: Model) => Unstamped<RestoreClientEvent>) =>
    harness.delayed(owed, (model) => model.owed.has(owed) ? make(model) : undefined);
  return [
    // The manifest the pump joined: of the snapshot the first begin named, now and then another.
    fc.constantFrom("s1", "s1", "s1", "s2").chain((id) =>
      result("manifest", () => ({ type: "manifest", snapshotId: id, archives: Object.keys(PLAN) }))
    ),
    result("archive-wanted", (model) => {
      const archive = Object.keys(PLAN).find((a) => !model.asked.has(a))!;
      return { type: "archive-wanted", archive, members: PLAN[archive]! };
    }),
    fc.constantFrom("written", "file", "restore").chain((outcome) =>
      result(
        "written",
        () =>
          outcome === "written"
            ? { type: "written" }
            : { type: "write-failed", scope: outcome as "file", reason: "refused" },
      )
    ),
    result("restored", () => ({ type: "restored" })),
    // The writer refuses a file while its pieces still come.
    harness.delayed(
      "refused mid-member",
      (model) =>
        model.open !== undefined && !model.memberEnded && !model.skipping
          ? { type: "write-failed", scope: "file", reason: "EACCES" }
          : undefined,
    ),
  ];
}

/** The next step of a healthy server and pump (most draws: it takes runs deep into a restore). */
const healthy = fc.integer({ min: 0, max: 60 }).map((d) =>
  harness.command("healthy next", d, (model) => healed(model))
);

const commands = [
  ...Array.from({ length: 8 }, () => healthy),
  fc.tuple(delay, fc.constantFrom(...Object.keys(MESSAGES))).map(([d, name]) =>
    harness.command(`message(${name})`, d, () => ({
      type: "message",
      message: MESSAGES[name] as { type: string },
    }))
  ),
  fc.tuple(delay, fc.constantFrom(...RECORDS)).map(([d, record]) =>
    harness.command(`record(${record.kind}${record.index ?? ""})`, d, () => ({
      type: "record",
      record,
    }))
  ),
  // A server that names the member just past the ones asked for, while an archive streams.
  harness.delayed(
    "record(head one past the plan)",
    (model) =>
      model.archive !== undefined && model.open === undefined
        ? { type: "record", record: { kind: "head", index: PLAN[model.archive]! } }
        : undefined,
  ),
  ...results(),
  harness.delayed("heard", () => ({ type: "heard" })),
  harness.delayed("tick", () => ({ type: "tick" })),
  fc.tuple(delay, fc.integer({ min: 0, max: 5 })).map(([d, draw]) =>
    harness.command(
      "failure",
      d,
      () =>
        draw === 0
          ? { type: "failure", reason: "socket broke" }
          : draw === 1
          ? { type: "server-report", reason: "EIO" }
          : undefined,
    )
  ),
];

/** What a healed link and pump give next: the server's part, then the pump's. */
function healed(model: Model): Unstamped<RestoreClientEvent> | undefined {
  const state = model.machine.state;
  const message = (body: Record<string, unknown>) => ({
    type: "message" as const,
    message: body as { type: string },
  });
  if (state === "awaiting-begin") return message(MESSAGES["begin(s1)"]!);
  if (state === "receiving-manifest" && !model.owed.has("manifest")) {
    return message(MESSAGES["manifest part"]!);
  }
  if (state === "ending") return message({ type: "restore-done", snapshot: model.begun });
  const [owed] = model.owed;
  if (owed === "manifest") {
    return { type: "manifest", snapshotId: model.begun!, archives: Object.keys(PLAN) };
  }
  if (owed === "archive-wanted") {
    const archive = Object.keys(PLAN).find((a) => !model.asked.has(a))!;
    return { type: "archive-wanted", archive, members: PLAN[archive]! };
  }
  if (owed !== undefined && owed !== "written") return { type: owed };
  if (model.open !== undefined) {
    if (owed === "written") return { type: "written" };
    return { type: "record", record: { kind: "end", index: model.open } };
  }
  if (model.archive === undefined) return undefined;
  const next = [...Array(PLAN[model.archive]!).keys()].find((i) => !model.named.has(i));
  return next === undefined
    ? { type: "record", record: { kind: "archive-end" } }
    : { type: "record", record: { kind: "head", index: next } };
}

/**
 * The restore client machine suite.
 *
 * @param create makes the machine under test
 * @param name names the implementation
 * @returns the suite
 */
export function restoreClientMachineSuite(
  create: (times: SessionTimes, startMs: number) => RestoreClientUnderTest,
  name = "lanfree",
): Suite {
  return harness.suite(
    `restore client session machine (${name})`,
    "over a faulty server and link it asks for and writes only what the plan holds, each once, keeps time and always ends",
    commands,
    create,
    () => ({
      owed: new Set(),
      begun: undefined,
      manifestOf: undefined,
      asked: new Set(),
      archive: undefined,
      named: new Set(),
      open: undefined,
      memberEnded: false,
      skipping: false,
      sentEnd: false,
    }),
  );
}
