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
 * The suite takes both machines as arguments, so a mutant of either can be run through it.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type { PairedMachine } from "./session_pair_suite.ts";
import type {
  RestoreServerAction,
  RestoreServerEvent,
} from "../src/core/session/restore_server_machine.ts";
import type {
  RestoreClientAction,
  RestoreClientEvent,
  RestoreClientRecord,
} from "../src/core/session/restore_client_machine.ts";
import type { SessionTimes, Unstamped } from "../src/core/session/session_clock.ts";
import {
  type Channel,
  CHANNELS,
  checkPairEnd,
  checkPairTick,
  failPair as fail,
  linkFaults,
  type LinkFrame,
  newSideModel,
  PAIR_DRAIN_STEPS_MAX as DRAIN_STEPS_MAX,
  PAIR_TIMES as TIMES,
  PairCommand,
  type PairWorld,
  sendFrame as send,
  type Side,
  SIDES,
} from "./_pair_link.ts";

/** Makes the two machines under test. */
export interface RestorePairFactories {
  client(
    times: SessionTimes,
    startMs: number,
  ): PairedMachine<RestoreClientEvent, RestoreClientAction>;
  server(
    times: SessionTimes,
    startMs: number,
  ): PairedMachine<RestoreServerEvent, RestoreServerAction>;
}

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

interface World extends PairWorld<Frame> {
  client: PairedMachine<RestoreClientEvent, RestoreClientAction>;
  server: PairedMachine<RestoreServerEvent, RestoreServerAction>;
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
  const side = newSideModel;
  return {
    nowMs: 0,
    client: factories.client(TIMES, 0),
    server: factories.server(TIMES, 0),
    frames: [],
    clientOwed: new Set(),
    serverOwed: new Set(["opened"]),
    wanted: [],
    reading: false,
    open: undefined,
    streaming: undefined,
    unreadable: new Set(),
    readFails: false,
    refuse: undefined,
    broken: false,
    breakOwed: new Set(),
    faults: [],
    sides: { client: side(), server: side() },
    path: [],
  };
}

function control(world: World, to: Side, message: Record<string, unknown>): void {
  send(world, { to, channel: "control", what: String(message.type), message });
}

function feedClient(world: World, event: Unstamped<RestoreClientEvent>): void {
  const live = !world.client.ended;
  const actions = world.client.handle({ ...event, atMs: world.nowMs } as RestoreClientEvent);
  const kinds = actions.map((a) => a.type);
  world.path.push(`client ${event.type}@${world.nowMs} -> [${kinds.join(",")}]`);
  if (event.type === "tick") checkPairTick(world, "client", kinds, live, true, "failed");
  if (event.type === "message" || event.type === "heard" || event.type === "record") {
    world.sides.client.lastHeardMs = world.nowMs;
  }
  for (const action of actions) clientAction(world, action);
  if (world.sides.client.outcome === "done") {
    if (world.sides.server.outcome !== "done") {
      fail(world, "the client is done while the server is not");
    }
    if (world.sides.client.snapshotId !== world.sides.server.snapshotId) {
      fail(world, "the client is done with another snapshot than the server sent");
    }
  }
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
    case "send-keepalive":
      model.lastKeepaliveMs = world.nowMs;
      return send(world, { to: "server", channel: "keepalive", what: "keepalive" });
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

function feedServer(world: World, event: Unstamped<RestoreServerEvent>): void {
  const live = !world.server.ended;
  const actions = world.server.handle({ ...event, atMs: world.nowMs } as RestoreServerEvent);
  const kinds = actions.map((a) => a.type);
  world.path.push(`server ${event.type}@${world.nowMs} -> [${kinds.join(",")}]`);
  if (event.type === "tick") checkPairTick(world, "server", kinds, live, true, "failed");
  if (event.type === "message" || event.type === "heard") {
    world.sides.server.lastHeardMs = world.nowMs;
  }
  for (const action of actions) serverAction(world, action, event);
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
      return feedServer(world, { type: "request", archive: message.archive });
    }
    case "stream-archive":
      world.streaming = action.archive;
      world.serverOwed.add("archive-sent");
      return;
    case "send-keepalive":
      model.lastKeepaliveMs = world.nowMs;
      return send(world, { to: "client", channel: "keepalive", what: "keepalive" });
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
    return feedServer(world, { type: "failure", reason: "EIO reading the repository" });
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
  feedServer(world, { type: "archive-sent" });
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

/** Delivers the oldest frame of `channel` toward `to`, if there is one and it is read now. */
function deliver(world: World, to: Side, channel: Channel): void {
  if (!reads(world, to, channel)) return;
  const index = world.frames.findIndex((f) => f.to === to && f.channel === channel);
  if (index < 0) return;
  const [frame] = world.frames.splice(index, 1);
  if (to === "client") {
    if (frame!.channel === "keepalive") feedClient(world, { type: "heard" });
    else if (frame!.channel === "error") {
      feedClient(world, { type: "server-report", reason: "the server failed" });
    } else if (frame!.channel === "data") {
      if (frame!.record!.kind === "end" && world.open !== undefined && world.refuse === "mid") {
        world.refuse = undefined;
        feedClient(world, { type: "write-failed", scope: "file", reason: "EACCES" });
      }
      feedClient(world, { type: "record", record: frame!.record! });
    } else feedClient(world, { type: "message", message: frame!.message as { type: string } });
    return;
  }
  if (frame!.channel === "keepalive") feedServer(world, { type: "heard" });
  else feedServer(world, { type: "message", message: frame!.message as { type: string } });
}

function clientCanGive(world: World, owed: ClientOwed): boolean {
  return world.clientOwed.has(owed);
}

function giveClient(world: World, owed: ClientOwed): void {
  world.clientOwed.delete(owed);
  switch (owed) {
    case "manifest":
      return feedClient(world, {
        type: "manifest",
        snapshotId: SNAPSHOT,
        archives: Object.keys(PLAN),
      });
    case "archive-wanted": {
      const archive = Object.keys(PLAN)[world.wanted.length]!;
      world.wanted.push(archive);
      return feedClient(world, { type: "archive-wanted", archive, members: PLAN[archive]! });
    }
    case "written":
      if (world.refuse === "end") {
        world.refuse = undefined;
        return feedClient(world, { type: "write-failed", scope: "file", reason: "hash mismatch" });
      }
      return feedClient(world, { type: "written" });
    case "restored":
      return feedClient(world, { type: "restored" });
  }
}

function serverCanGive(world: World, owed: ServerOwed): boolean {
  return world.serverOwed.has(owed);
}

function giveServer(world: World, owed: ServerOwed): void {
  world.serverOwed.delete(owed);
  if (owed === "opened") {
    return feedServer(world, { type: "opened", archives: Object.keys(PLAN) });
  }
  if (owed === "archive-sent") return streamArchive(world);
  feedServer(world, { type: owed });
}

function tick(world: World, delayMs: number): void {
  world.nowMs += delayMs;
  if (!world.client.ended) feedClient(world, { type: "tick" });
  if (!world.server.ended) feedServer(world, { type: "tick" });
}

function breakNotice(world: World, side: Side): void {
  world.breakOwed.delete(side);
  const failure = { type: "failure", reason: "connection reset" } as const;
  if (side === "client") feedClient(world, failure);
  else feedServer(world, failure);
}

const CLIENT_OWED: readonly ClientOwed[] = ["manifest", "archive-wanted", "written", "restored"];
const SERVER_OWED: readonly ServerOwed[] = ["opened", "manifest-sent", "archive-sent"];

function healthyCommands() {
  return [
    fc.tuple(fc.constantFrom(...SIDES), fc.constantFrom(...CHANNELS)).map(([to, channel]) =>
      new PairCommand<World>(
        `deliver ${channel} to ${to}`,
        (w) => reads(w, to, channel) && w.frames.some((f) => f.to === to && f.channel === channel),
        (w) => deliver(w, to, channel),
      )
    ),
    fc.constantFrom(...CLIENT_OWED).map((owed) =>
      new PairCommand<World>(
        `client pump: ${owed}`,
        (w) => clientCanGive(w, owed),
        (w) => giveClient(w, owed),
      )
    ),
    fc.constantFrom(...SERVER_OWED).map((owed) =>
      new PairCommand<World>(
        `server pump: ${owed}`,
        (w) => serverCanGive(w, owed),
        (w) => giveServer(w, owed),
      )
    ),
    fc.integer({ min: 1, max: 20 }).map((d) =>
      new PairCommand<World>(`tick+${d}ms`, () => true, (w) => tick(w, d))
    ),
  ];
}

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
    ...linkFaults<World>(tick, breakNotice),
    fc.constant(
      new PairCommand<World>("the server's reads fail", (w) => !w.readFails, (w) => {
        w.readFails = true;
      }),
    ),
  ];
}

function commands(faults: boolean) {
  const healthy = healthyCommands();
  const benign = [...healthy, ...healthy, ...healthy, ...benignFaults()];
  if (!faults) return benign;
  return [...benign, ...benign, ...faultCommands()]; // faults are about one draw in eight
}

/** The link heals: everything in flight arrives, the pumps give what they owe, the clock runs. */
function drain(world: World, picks: readonly number[]): void {
  for (let step = 0; step < DRAIN_STEPS_MAX; step++) {
    if (world.client.ended && world.server.ended) return;
    const [side] = world.breakOwed;
    if (side !== undefined) {
      breakNotice(world, side);
      continue;
    }
    // Channels race each other: which delivers first is drawn.
    const ready = CHANNELS.flatMap((c) =>
      SIDES.filter((to) =>
        reads(world, to, c) && world.frames.some((f) => f.to === to && f.channel === c)
      ).map((to) => [to, c] as const)
    );
    const pick = picks[step % picks.length]!;
    if (ready.length > 0) {
      const [to, channel] = ready[pick % ready.length]!;
      deliver(world, to, channel);
      continue;
    }
    const client = CLIENT_OWED.find((o) => clientCanGive(world, o));
    if (client !== undefined) {
      giveClient(world, client);
      continue;
    }
    const server = SERVER_OWED.find((o) => serverCanGive(world, o));
    if (server !== undefined) {
      giveServer(world, server);
      continue;
    }
    tick(world, TIMES.keepaliveMs / 2);
  }
  fail(
    world,
    `not ended after ${DRAIN_STEPS_MAX} drain steps: client ${world.client.state}, server ${world.server.state}`,
  );
}

function property(factories: RestorePairFactories, faults: boolean) {
  return fc.property(
    fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 8 }),
    fc.commands(commands(faults), { maxCommands: 80, size: "max" }),
    (picks, cmds) => {
      const world = newWorld(factories);
      fc.modelRun(() => ({ model: world, real: world }), cmds);
      drain(world, picks);
      checkPairEnd(world);
    },
  );
}

/**
 * The restore pair suite.
 *
 * @param factories makes the client and the server machines under test
 * @param name names the implementation
 * @returns the suite
 */
export function restorePairSuite(factories: RestorePairFactories, name = "lanfree"): Suite {
  return {
    name: `restore client and server machines as a pair (${name})`,
    properties: [
      defineProperty(
        "over a healthy link both sides of a restore end done, keeping time as stated",
        { numRuns: 200 },
        () => property(factories, false),
      ),
      defineProperty(
        "over a breaking, stalling, reordering link with failing reads every restore ends, agreeing or with the done server's agent gone",
        { numRuns: 300 },
        () => property(factories, true),
      ),
    ],
  };
}
