/**
 * Pair properties of the backup session machines: a client machine
 * (`src/core/session/backup_client_machine.ts`) and a server machine
 * (`backup_server_machine.ts`) run against each other over a link model, with time as input.
 * `fc.commands` runs pick what happens next: a channel delivers its oldest frame (control, error,
 * data and keepalive frames are separate channels, so frames of different channels overtake
 * each other, as they do between descriptors), a pump gives a result it owes (the snapshot
 * opened, the manifest written, the commit or its failure...), the clock moves on and both sides
 * tick, or a fault strikes: the connection breaks (each side learns it at its own time, frames in
 * flight are lost), the commit fails, or the link stalls past the silence rule. After every step:
 *
 * - the tick rows fire as stated on both sides: a keepalive `keepaliveMs` after the last one;
 *   a live side that heard nothing for `peerSilentMs` fails (the server not while committing);
 * - the client is done only if the server is done, with the same snapshot;
 *
 * and once the link heals (the drain delivers everything, the pumps give what they owe, the
 * clock runs), every run ends within a bounded number of steps with both sides agreeing, or the
 * side that believes "done" is the server whose client failed after a fault (a break, a stall
 * that made a side give up): its peer's channels are dead. A run with no fault ends with both
 * done.
 *
 * The suite takes both machines as arguments, so a mutant of either can be run through it.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type {
  BackupServerAction,
  BackupServerEvent,
} from "../src/core/session/backup_server_machine.ts";
import type {
  BackupClientAction,
  BackupClientEvent,
} from "../src/core/session/backup_client_machine.ts";
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

/** A machine as the suite drives it. */
export interface PairedMachine<E, A> {
  readonly state: string;
  readonly ended: boolean;
  handle(event: E): A[];
}

/** Makes the two machines under test. */
export interface PairFactories {
  client(
    times: SessionTimes,
    startMs: number,
  ): PairedMachine<BackupClientEvent, BackupClientAction>;
  server(
    times: SessionTimes,
    startMs: number,
  ): PairedMachine<BackupServerEvent, BackupServerAction>;
}

/** A frame in flight toward `to`. */
interface Frame extends LinkFrame {
  readonly message?: Record<string, unknown>;
}

/** What the pumps owe their machines (results of actions they carried out). */
type ClientOwed = "identified" | "prepared" | "sent";
type ServerOwed = "opened" | "parent-sent" | "manifest-written" | "committed" | "client-report";

interface World extends PairWorld<Frame> {
  client: PairedMachine<BackupClientEvent, BackupClientAction>;
  server: PairedMachine<BackupServerEvent, BackupServerAction>;
  clientOwed: Set<ClientOwed>;
  serverOwed: Set<ServerOwed>;
  /** The client must take the parent's last part before it can be prepared. */
  parentPending: boolean;
  hasParent: boolean;
  /** The server's reader stopped (after the manifest's last part). */
  serverStopped: boolean;
  /** The client's `failed` report, once it reached the server. */
  clientReason: string | undefined;
  /** When the server's wait for the client's report runs out. */
  reportWaitUntilMs: number | undefined;
}

function newWorld(factories: PairFactories, hasParent: boolean): World {
  const side = newSideModel;
  return {
    nowMs: 0,
    client: factories.client(TIMES, 0),
    server: factories.server(TIMES, 0),
    frames: [],
    clientOwed: new Set(["identified"]),
    serverOwed: new Set(),
    parentPending: false,
    hasParent,
    serverStopped: false,
    clientReason: undefined,
    reportWaitUntilMs: undefined,
    broken: false,
    breakOwed: new Set(),
    faults: [],
    sides: { client: side(), server: side() },
    path: [],
  };
}

function feedClient(world: World, event: Unstamped<BackupClientEvent>): void {
  const live = !world.client.ended;
  const actions = world.client.handle({ ...event, atMs: world.nowMs } as BackupClientEvent);
  const kinds = actions.map((a) => a.type);
  world.path.push(`client ${event.type}@${world.nowMs} -> [${kinds.join(",")}]`);
  if (event.type === "tick") checkPairTick(world, "client", kinds, live, true, "abort");
  if (event.type === "message" || event.type === "heard") {
    world.sides.client.lastHeardMs = world.nowMs;
  }
  for (const action of actions) clientAction(world, action);
  if (world.sides.client.outcome === "done") {
    if (world.sides.server.outcome !== "done") {
      fail(world, "the client is done while the server is not");
    }
    if (world.sides.client.snapshotId !== world.sides.server.snapshotId) {
      fail(world, "the client is done with another snapshot than the server committed");
    }
  }
}

function clientAction(world: World, action: BackupClientAction): void {
  const model = world.sides.client;
  switch (action.type) {
    case "send-hello":
      return send(world, {
        to: "server",
        channel: "control",
        what: "hello",
        message: { type: "hello" },
      });
    case "prepare":
      world.parentPending = action.hasParent;
      world.clientOwed.add("prepared");
      return;
    case "take-parent-part":
      world.parentPending = false;
      return;
    case "pack-and-send":
      world.clientOwed.add("sent");
      return;
    case "send-keepalive":
      model.lastKeepaliveMs = world.nowMs;
      return send(world, { to: "server", channel: "keepalive", what: "keepalive" });
    case "abort":
      world.clientOwed.clear();
      return;
    case "send-failed":
      model.sentFailed = true;
      return send(world, { to: "server", channel: "error", what: "failed" });
    case "done":
      model.outcome = "done";
      model.snapshotId = action.snapshotId;
      return;
    case "failed":
      model.outcome = "failed";
      return;
  }
}

function feedServer(world: World, event: Unstamped<BackupServerEvent>): void {
  const live = !world.server.ended && !world.serverOwed.has("client-report");
  const committing = world.serverOwed.has("committed");
  const actions = world.server.handle({ ...event, atMs: world.nowMs } as BackupServerEvent);
  const kinds = actions.map((a) => a.type);
  world.path.push(`server ${event.type}@${world.nowMs} -> [${kinds.join(",")}]`);
  if (event.type === "tick") {
    checkPairTick(world, "server", kinds, live, !committing, "abort");
  }
  if (event.type === "message" || event.type === "heard") {
    world.sides.server.lastHeardMs = world.nowMs;
  }
  for (const action of actions) serverAction(world, action);
}

function serverAction(world: World, action: BackupServerAction): void {
  const model = world.sides.server;
  switch (action.type) {
    case "open":
      world.serverOwed.add("opened");
      return;
    case "send-begin":
      model.snapshotId = action.snapshotId;
      return send(world, {
        to: "client",
        channel: "control",
        what: "begin",
        message: { type: "begin", snapshotId: action.snapshotId, hasParent: action.hasParent },
      });
    case "stream-parent":
      world.serverOwed.add("parent-sent");
      return send(world, {
        to: "client",
        channel: "control",
        what: "parent part",
        message: { type: "part", of: "parent", last: true },
      });
    case "take-manifest-part":
      world.serverOwed.add("manifest-written"); // the suite's client sends one, the last
      return;
    case "stop-reading":
      world.serverStopped = true;
      return;
    case "commit":
      world.serverOwed.add("committed");
      return;
    case "send-committed":
      return send(world, {
        to: "client",
        channel: "control",
        what: "committed",
        message: { type: "committed", snapshotId: action.snapshotId },
      });
    case "send-keepalive":
      model.lastKeepaliveMs = world.nowMs;
      return send(world, { to: "client", channel: "keepalive", what: "keepalive" });
    case "abort":
      world.serverOwed.clear();
      return;
    case "await-client-report":
      world.serverOwed.add("client-report");
      world.reportWaitUntilMs = world.nowMs + action.waitMs;
      return;
    case "send-failed":
      model.sentFailed = true;
      return send(world, { to: "client", channel: "error", what: "failed" });
    case "done":
      model.outcome = "done";
      return;
    case "failed":
      model.outcome = "failed";
      return;
  }
}

/** Delivers the oldest frame of `channel` toward `to`, if there is one. */
function deliver(world: World, to: Side, channel: Channel): boolean {
  const index = world.frames.findIndex((f) => f.to === to && f.channel === channel);
  if (index < 0) return false;
  const [frame] = world.frames.splice(index, 1);
  if (to === "client") {
    if (frame!.channel === "keepalive") feedClient(world, { type: "heard" });
    else if (frame!.channel === "error") {
      feedClient(world, { type: "server-report", reason: "the server failed" });
    } else {
      feedClient(world, { type: "message", message: frame!.message as { type: string } });
    }
    return true;
  }
  if (frame!.channel === "keepalive") feedServer(world, { type: "heard" });
  else if (frame!.channel === "data") feedServer(world, { type: "data-end" });
  else if (frame!.channel === "error") {
    world.clientReason = "the client failed";
    if (world.serverOwed.has("client-report")) giveServer(world, "client-report");
  } else if (!world.serverStopped) {
    feedServer(world, { type: "message", message: frame!.message as { type: string } });
  }
  return true;
}

/** Whether the client's pump can give `owed` now. */
function clientCanGive(world: World, owed: ClientOwed): boolean {
  return world.clientOwed.has(owed) && !(owed === "prepared" && world.parentPending);
}

function giveClient(world: World, owed: ClientOwed): void {
  world.clientOwed.delete(owed);
  if (owed === "identified") return feedClient(world, { type: "identified", sourceId: "src" });
  if (owed === "prepared") return feedClient(world, { type: "prepared" });
  // The data's end on the data channel, the manifest's last part on control, then `sent`.
  send(world, { to: "server", channel: "data", what: "data end" });
  send(world, {
    to: "server",
    channel: "control",
    what: "manifest part",
    message: { type: "part", of: "manifest", last: true },
  });
  feedClient(world, { type: "sent" });
}

function serverCanGive(world: World, owed: ServerOwed): boolean {
  if (!world.serverOwed.has(owed)) return false;
  if (owed === "client-report") {
    return world.clientReason !== undefined || world.nowMs >= world.reportWaitUntilMs!;
  }
  return true;
}

function giveServer(world: World, owed: ServerOwed, commitFails = false): void {
  world.serverOwed.delete(owed);
  if (owed === "opened") {
    return feedServer(world, { type: "opened", snapshotId: "s1", hasParent: world.hasParent });
  }
  if (owed === "committed" && commitFails) {
    world.faults.push("the commit failed");
    return feedServer(world, { type: "commit-failed", reason: "ENOSPC" });
  }
  if (owed === "committed") return feedServer(world, { type: "committed", snapshotId: "s1" });
  if (owed === "client-report") {
    return feedServer(world, { type: "client-report", reason: world.clientReason });
  }
  feedServer(world, { type: owed });
}

function tick(world: World, delayMs: number): void {
  world.nowMs += delayMs;
  if (!world.client.ended) feedClient(world, { type: "tick" });
  if (!world.server.ended) feedServer(world, { type: "tick" });
}

/** Gives each side its owed failure of a break. */
function breakNotice(world: World, side: Side): void {
  world.breakOwed.delete(side);
  const failure = { type: "failure", reason: "connection reset" } as const;
  if (side === "client") feedClient(world, failure);
  else feedServer(world, failure);
}

function commands(faults: boolean) {
  const healthy = [
    fc.tuple(fc.constantFrom(...SIDES), fc.constantFrom(...CHANNELS)).map(([to, channel]) =>
      new PairCommand<World>(
        `deliver ${channel} to ${to}`,
        (w) => w.frames.some((f) => f.to === to && f.channel === channel),
        (w) => void deliver(w, to, channel),
      )
    ),
    fc.constantFrom<ClientOwed>("identified", "prepared", "sent").map((owed) =>
      new PairCommand<World>(
        `client pump: ${owed}`,
        (w) => clientCanGive(w, owed),
        (w) => giveClient(w, owed),
      )
    ),
    fc.constantFrom<ServerOwed>("opened", "parent-sent", "manifest-written", "committed").map((
      owed,
    ) =>
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
  if (!faults) return healthy;
  return [
    ...healthy,
    ...healthy, // faults are one draw in three
    ...healthy,
    ...linkFaults<World>(tick, breakNotice),
    fc.constant(
      new PairCommand<World>(
        "the commit fails",
        (w) => serverCanGive(w, "committed"),
        (w) => giveServer(w, "committed", true),
      ),
    ),
  ];
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
    const frame = world.frames[0];
    if (frame !== undefined) {
      deliver(world, frame.to, frame.channel);
      continue;
    }
    const client = (["identified", "prepared", "sent"] as const).find((o) =>
      clientCanGive(world, o)
    );
    if (client !== undefined) {
      giveClient(world, client);
      continue;
    }
    // The pump's results race each other: which comes first is drawn.
    const owed = ([...world.serverOwed] as ServerOwed[]).filter((o) => serverCanGive(world, o));
    const server = owed[picks[step % picks.length]! % Math.max(1, owed.length)];
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

function property(factories: PairFactories, faults: boolean) {
  return fc.property(
    fc.boolean(),
    fc.array(fc.nat({ max: 5 }), { minLength: 1, maxLength: 8 }),
    fc.commands(commands(faults), { maxCommands: 80, size: "max" }),
    (hasParent, picks, cmds) => {
      const world = newWorld(factories, hasParent);
      fc.modelRun(() => ({ model: world, real: world }), cmds);
      drain(world, picks);
      checkPairEnd(world);
    },
  );
}

/**
 * The pair suite.
 *
 * @param factories makes the client and the server machines under test
 * @param name names the implementation
 * @returns the suite
 */
export function sessionPairSuite(factories: PairFactories, name = "lanfree"): Suite {
  return {
    name: `backup client and server machines as a pair (${name})`,
    properties: [
      defineProperty(
        "over a healthy link both sides end done, keeping time as stated",
        { numRuns: 200 },
        () => property(factories, false),
      ),
      defineProperty(
        "over a breaking, stalling, reordering link every run ends, agreeing or with the done side's peer gone",
        { numRuns: 300 },
        () => property(factories, true),
      ),
    ],
  };
}
