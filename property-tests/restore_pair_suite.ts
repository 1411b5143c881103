/**
 * Pair properties of the restore session machines: a client machine (the agent that receives,
 * `src/core/session/restore_client_machine.ts`) and a server machine (the side that sends,
 * `restore_server_machine.ts`) run against each other over the link model of the backup pair
 * (`session_pair_suite.ts`), with time as input. `fc.commands` runs pick what happens next: a
 * channel delivers its oldest frame (control, error, data and keepalive frames are separate
 * channels, so frames of different channels overtake each other, as they do between
 * descriptors), a pump gives a result it owes (the snapshot opened, the manifest sent, an archive
 * streamed; the manifest planned, the next archive the writer wants, a file written, the writer's
 * end), the clock moves on and both sides tick, or a fault strikes: the connection breaks (each
 * side learns it at its own time, frames in flight are lost), the link stalls past the silence
 * rule, the server cannot read a member (a `problem` record: the agent lists that file), the
 * server's read fails outright (its session fails), or the target refuses a file (the agent
 * lists it and reads past its member). After every step:
 *
 * - the tick rows fire as stated on both sides: a keepalive `keepaliveMs` after the last one; a
 *   live side that heard nothing for `peerSilentMs` fails;
 * - the client is done only if the server is done, with the same snapshot;
 *
 * and once the link heals (the drain delivers everything, the pumps give what they owe, the
 * clock runs), every run ends within a bounded number of steps with both sides agreeing, or with
 * the server done and the client failed after a fault (its `restore-done` lost in a break, or a
 * stall that made the agent give up): the server holds only dead channels. A run without a fault
 * ends with both done (a member the server could not read, or a file the target refused, leaves
 * the restore incomplete, not failed). A side that failed sent its `failed` report: for the
 * restore machines that is the `failed` action itself (the job's tell carries it), so the model
 * sends it there and checks every failed side took that action.
 *
 * Both machines are arguments, so a mutant of either can be run through the suite. It runs on the
 * pair harness (`_pair_harness.ts`) it shares with the backup pair; the restore's frames, pumps,
 * faults and the order a healed link gives things in are its own.
 *
 * @module
 */

import fc from "fast-check";
import type { Suite } from "./_suite.ts";
import {
  type MachinePair,
  type MachinePairWorld,
  newPairWorld,
  PairHarness,
} from "./_pair_harness.ts";
import type {
  RestoreServerAction,
  RestoreServerEvent,
} from "../src/core/session/restore_server_machine.ts";
import type {
  RestoreClientAction,
  RestoreClientEvent,
  RestoreClientRecord,
} from "../src/core/session/restore_client_machine.ts";
import type { Unstamped } from "../src/core/session/session_clock.ts";
import {
  type Channel,
  type LinkFrame,
  PairCommand,
  sendFrame as send,
  type Side,
} from "./_pair_link.ts";

/** Makes the two machines under test. */
export type RestorePairFactories = MachinePair<
  RestoreClientEvent,
  RestoreClientAction,
  RestoreServerEvent,
  RestoreServerAction
>;

/** The snapshot's archives and how many members of each the agent's writer asks for. */
const PLAN: Readonly<Record<string, number>> = { a1: 2, a2: 1 };
const SNAPSHOT = "s1";

/** A frame in flight toward `to`. */
interface Frame extends LinkFrame {
  readonly message?: Record<string, unknown>;
  readonly record?: RestoreClientRecord;
}

type ClientOwed = "manifest" | "archive-wanted" | "written" | "restored";
type ServerOwed = "opened" | "manifest-sent" | "archive-sent";

interface World extends
  MachinePairWorld<
    Frame,
    RestoreClientEvent,
    RestoreClientAction,
    RestoreServerEvent,
    RestoreServerAction
  > {
  clientOwed: Set<ClientOwed>;
  serverOwed: Set<ServerOwed>;
  /** Archives the writer asked for so far, and the member the client has open. */
  wanted: string[];
  /** The client's pump reads the data channel: an archive was requested and has not ended. */
  reading: boolean;
  open: number | undefined;
  /** The archive the server streams next (its request's), and members it cannot read. */
  streaming: string | undefined;
  unreadable: Set<string>;
  readFails: boolean;
  /** The target refuses the next file: while its pieces come (`mid`), or at its end. */
  refuse: "mid" | "end" | undefined;
}

function newWorld(factories: RestorePairFactories): World {
  return {
    ...newPairWorld(factories),
    clientOwed: new Set(),
    serverOwed: new Set(["opened"]),
    wanted: [],
    reading: false,
    open: undefined,
    streaming: undefined,
    unreadable: new Set(),
    readFails: false,
    refuse: undefined,
  };
}

function control(world: World, to: Side, message: Record<string, unknown>): void {
  send(world, { to, channel: "control", what: String(message.type), message });
}

function clientAction(world: World, action: RestoreClientAction): void {
  const model = world.sides.client;
  switch (action.type) {
    case "take-manifest-part":
      world.clientOwed.add("manifest"); // the server sends one part, the last
      return;
    case "archive-done":
      world.reading = false;
      return wantNext(world);
    case "write-target":
      return wantNext(world);
    case "request-archive":
      world.reading = true;
      return control(world, "server", { type: "part", of: "members", archive: action.archive });
    case "write-member":
      world.open = action.index;
      return;
    case "end-member":
      world.clientOwed.add("written");
      return;
    case "list-problem":
    case "report-progress":
      world.open = undefined;
      return;
    case "send-end":
      control(world, "server", { type: "progress" });
      return control(world, "server", { type: "part", of: "members", archive: null });
    case "abort":
      world.clientOwed.clear();
      return;
    case "done":
      model.outcome = "done";
      model.snapshotId = action.snapshotId;
      return;
    case "failed":
      // The job's tell carries the agent's report (on control, where the server reads).
      model.outcome = "failed";
      model.sentFailed = true;
      return control(world, "server", { type: "failed", message: "the agent failed" });
  }
}

/** The writer wants the next archive of the plan, or is through. */
function wantNext(world: World): void {
  const left = world.wanted.length < Object.keys(PLAN).length;
  world.clientOwed.add(left ? "archive-wanted" : "restored");
}

function serverAction(
  world: World,
  action: RestoreServerAction,
  event: Unstamped<RestoreServerEvent>,
): void {
  const model = world.sides.server;
  switch (action.type) {
    case "send-manifest":
      model.snapshotId = SNAPSHOT;
      control(world, "client", { type: "restore-begin", snapshot: SNAPSHOT });
      control(world, "client", { type: "part", of: "manifest", last: true });
      world.serverOwed.add("manifest-sent");
      return;
    case "take-request-part": {
      // The pump joins the request (one part) and feeds it right after, as its follow-up.
      const message = (event as { message: unknown }).message as { archive: string | null };
      return harness.feedServer(world, { type: "request", archive: message.archive });
    }
    case "stream-archive":
      world.streaming = action.archive;
      world.serverOwed.add("archive-sent");
      return;
    case "send-restore-done":
      return control(world, "client", { type: "restore-done", snapshot: SNAPSHOT });
    case "done":
      model.outcome = "done";
      return;
    case "failed":
      // The job's tell carries the server's report, on control and on the error channel.
      model.outcome = "failed";
      model.sentFailed = true;
      control(world, "client", { type: "failed", message: "the server failed" });
      return send(world, { to: "client", channel: "error", what: "failed" });
  }
}

/** The server's pump streams the archive it serves: each member, then `archive-end`. */
function streamArchive(world: World): void {
  const archive = world.streaming!;
  world.streaming = undefined;
  if (world.readFails) {
    world.faults.push(`the server's read of ${archive} failed`);
    return harness.feedServer(world, { type: "failure", reason: "EIO reading the repository" });
  }
  const data = (record: RestoreClientRecord) =>
    send(world, { to: "client", channel: "data", what: record.kind, record });
  for (let index = 0; index < PLAN[archive]!; index++) {
    if (world.unreadable.has(`${archive}/${index}`)) data({ kind: "problem", index });
    else {
      data({ kind: "head", index });
      data({ kind: "end", index });
    }
  }
  data({ kind: "archive-end" });
  harness.feedServer(world, { type: "archive-sent" });
}

/**
 * Whether the frames of `channel` toward `to` are read now: the client's pump reads the data
 * channel only while an archive it asked for streams and no file's writer is finishing (it pulls
 * the next record when the writer is ready); everything else is read as it comes.
 */
function reads(world: World, to: Side, channel: Channel): boolean {
  if (to === "server" || channel !== "data" || world.client.ended) return true;
  return world.reading && !world.clientOwed.has("written");
}

/** What a frame does on arrival (keepalives and the server's report are the harness's). */
function receive(world: World, frame: Frame): void {
  if (frame.to === "server") {
    return harness.feedServer(world, {
      type: "message",
      message: frame.message as { type: string },
    });
  }
  if (frame.channel !== "data") {
    return harness.feedClient(world, {
      type: "message",
      message: frame.message as { type: string },
    });
  }
  if (frame.record!.kind === "end" && world.open !== undefined && world.refuse === "mid") {
    world.refuse = undefined;
    harness.feedClient(world, { type: "write-failed", scope: "file", reason: "EACCES" });
  }
  harness.feedClient(world, { type: "record", record: frame.record! });
}

function clientCanGive(world: World, owed: ClientOwed): boolean {
  return world.clientOwed.has(owed);
}

function giveClient(world: World, owed: ClientOwed): void {
  world.clientOwed.delete(owed);
  switch (owed) {
    case "manifest":
      return harness.feedClient(world, {
        type: "manifest",
        snapshotId: SNAPSHOT,
        archives: Object.keys(PLAN),
      });
    case "archive-wanted": {
      const archive = Object.keys(PLAN)[world.wanted.length]!;
      world.wanted.push(archive);
      return harness.feedClient(world, {
        type: "archive-wanted",
        archive,
        members: PLAN[archive]!,
      });
    }
    case "written":
      if (world.refuse === "end") {
        world.refuse = undefined;
        return harness.feedClient(world, {
          type: "write-failed",
          scope: "file",
          reason: "hash mismatch",
        });
      }
      return harness.feedClient(world, { type: "written" });
    case "restored":
      return harness.feedClient(world, { type: "restored" });
  }
}

function serverCanGive(world: World, owed: ServerOwed): boolean {
  return world.serverOwed.has(owed);
}

function giveServer(world: World, owed: ServerOwed): void {
  world.serverOwed.delete(owed);
  if (owed === "opened") {
    return harness.feedServer(world, { type: "opened", archives: Object.keys(PLAN) });
  }
  if (owed === "archive-sent") return streamArchive(world);
  harness.feedServer(world, { type: owed });
}

const CLIENT_OWED: readonly ClientOwed[] = ["manifest", "archive-wanted", "written", "restored"];
const SERVER_OWED: readonly ServerOwed[] = ["opened", "manifest-sent", "archive-sent"];

const harness = new PairHarness<
  World,
  RestoreClientEvent,
  RestoreClientAction,
  RestoreServerEvent,
  RestoreServerAction,
  ClientOwed,
  ServerOwed
>({
  client: { heard: ["message", "heard", "record"], silenceAction: "failed", apply: clientAction },
  server: { heard: ["message", "heard"], silenceAction: "failed", apply: serverAction },
  clientPump: { owed: CLIENT_OWED, canGive: clientCanGive, give: giveClient },
  serverPump: { owed: SERVER_OWED, canGive: serverCanGive, give: giveServer },
  serverSnapshotVerb: "sent",
  reads,
  receive,
  healedStep,
});

/** Faults that leave the session whole: the restore ends incomplete, both sides done. */
function benignFaults() {
  return [
    fc.tuple(fc.constantFrom(...Object.keys(PLAN)), fc.nat({ max: 1 })).map(([archive, index]) =>
      new PairCommand<World>(
        `the server cannot read ${archive}/${index}`,
        (w) => !w.unreadable.has(`${archive}/${index}`) && index < PLAN[archive]!,
        (w) => void w.unreadable.add(`${archive}/${index}`),
      )
    ),
    // The target refuses the next file: while its pieces still come, or after its last one.
    fc.constantFrom<"mid" | "end">("mid", "end").map((when) =>
      new PairCommand<World>(
        `the target will refuse the next file (${when})`,
        (w) => w.refuse === undefined,
        (w) => void (w.refuse = when),
      )
    ),
  ];
}

function faultCommands() {
  return [
    ...harness.linkFaults(),
    fc.constant(
      new PairCommand<World>("the server's reads fail", (w) => !w.readFails, (w) => {
        w.readFails = true;
      }),
    ),
  ];
}

function commands(faults: boolean) {
  const healthy = harness.healthyCommands();
  const benign = [...healthy, ...healthy, ...healthy, ...benignFaults()];
  if (!faults) return benign;
  return [...benign, ...benign, ...faultCommands()]; // faults are about one draw in eight
}

/**
 * One step of the healed link: a channel delivers (channels race: which is drawn), else the
 * client's pump gives what it owes, else the server's.
 */
function healedStep(world: World, pick: number): boolean {
  const ready = harness.readyChannels(world);
  if (ready.length > 0) {
    const [to, channel] = ready[pick % ready.length]!;
    harness.deliver(world, to, channel);
    return true;
  }
  return harness.giveFirst(world, harness.spec.clientPump) ||
    harness.giveFirst(world, harness.spec.serverPump);
}

function property(factories: RestorePairFactories, faults: boolean) {
  return harness.property(commands(faults), 7, () => newWorld(factories));
}

/**
 * The restore pair suite.
 *
 * @param factories makes the client and the server machines under test
 * @param name names the implementation
 * @returns the suite
 */
export function restorePairSuite(factories: RestorePairFactories, name = "lanfree"): Suite {
  return harness.suite(
    `restore client and server machines as a pair (${name})`,
    "over a healthy link both sides of a restore end done, keeping time as stated",
    "over a breaking, stalling, reordering link with failing reads every restore ends, agreeing or with the done server's agent gone",
    (faults) => property(factories, faults),
  );
}
