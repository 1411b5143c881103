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
 * - the client sends run lines exactly when the server offered them (a parent whose file has
 *   the line layout): the offer, a `more` of manifest granting 0, precedes the parent's lines;
 *
 * and once the link heals (the drain delivers everything, the pumps give what they owe, the
 * clock runs), every run ends within a bounded number of steps with both sides agreeing, or the
 * side that believes "done" is the server whose client failed after a fault (a break, a stall
 * that made a side give up): its peer's channels are dead. A run with no fault ends with both
 * done.
 *
 * The suite takes both machines as arguments, so a mutant of either can be run through it. What
 * both pair suites share (feeding a side, the tick and end rules, the common commands, the drain)
 * is the harness of `_pair_harness.ts`; this file holds the backup pair's own frames, pumps and
 * faults.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import type { Suite } from "./_suite.ts";
import {
  type MachinePair,
  type MachinePairWorld,
  newPairWorld,
  type PairedMachine,
  PairHarness,
} from "./_pair_harness.ts";
import type {
  BackupServerAction,
  BackupServerEvent,
} from "../src/core/session/backup_server_machine.ts";
import type {
  BackupClientAction,
  BackupClientEvent,
} from "../src/core/session/backup_client_machine.ts";
import { type LinkFrame, PairCommand, sendFrame as send } from "./_pair_link.ts";

export type { PairedMachine };

/** Makes the two machines under test. */
export type PairFactories = MachinePair<
  BackupClientEvent,
  BackupClientAction,
  BackupServerEvent,
  BackupServerAction
>;

/** A frame in flight toward `to`. */
interface Frame extends LinkFrame {
  readonly message?: Record<string, unknown>;
}

/** What the pumps owe their machines (results of actions they carried out). */
type ClientOwed = "identified" | "prepared" | "sent";
type ServerOwed = "opened" | "parent-sent" | "manifest-written" | "committed" | "client-report";

interface World extends
  MachinePairWorld<
    Frame,
    BackupClientEvent,
    BackupClientAction,
    BackupServerEvent,
    BackupServerAction
  > {
  clientOwed: Set<ClientOwed>;
  serverOwed: Set<ServerOwed>;
  /** The client must take the parent's last part before it can be prepared. */
  parentPending: boolean;
  hasParent: boolean;
  /** The parent's file has the line layout (the server offers run lines). */
  parentHasLines: boolean;
  /** The server sent the offer of run lines. */
  offeredRunLines: boolean;
  /** The server's reader stopped (after the manifest's last part). */
  serverStopped: boolean;
  /** The client's `failed` report, once it reached the server. */
  clientReason: string | undefined;
  /** When the server's wait for the client's report runs out. */
  reportWaitUntilMs: number | undefined;
}

function newWorld(
  factories: PairFactories,
  parent: { hasParent: boolean; parentHasLines: boolean },
): World {
  return {
    ...newPairWorld(factories),
    clientOwed: new Set(["identified"]),
    serverOwed: new Set(),
    parentPending: false,
    ...parent,
    offeredRunLines: false,
    serverStopped: false,
    clientReason: undefined,
    reportWaitUntilMs: undefined,
  };
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
      assert.equal(action.runLines, world.offeredRunLines, "run lines sent without the offer");
      world.clientOwed.add("sent");
      return;
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
    case "offer-run-lines":
      world.offeredRunLines = true;
      return send(world, {
        to: "client",
        channel: "control",
        what: "run lines offer",
        message: { type: "more", of: "manifest", upTo: 0 },
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

/** What a frame does on arrival (keepalives and the server's report are the harness's). */
function receive(world: World, frame: Frame): void {
  if (frame.to === "client") {
    return harness.feedClient(world, {
      type: "message",
      message: frame.message as { type: string },
    });
  }
  if (frame.channel === "data") harness.feedServer(world, { type: "data-end" });
  else if (frame.channel === "error") {
    world.clientReason = "the client failed";
    if (world.serverOwed.has("client-report")) giveServer(world, "client-report");
  } else if (!world.serverStopped) {
    harness.feedServer(world, { type: "message", message: frame.message as { type: string } });
  }
}

/** Whether the client's pump can give `owed` now. */
function clientCanGive(world: World, owed: ClientOwed): boolean {
  return world.clientOwed.has(owed) && !(owed === "prepared" && world.parentPending);
}

function giveClient(world: World, owed: ClientOwed): void {
  world.clientOwed.delete(owed);
  if (owed === "identified") {
    return harness.feedClient(world, { type: "identified", sourceId: "src" });
  }
  if (owed === "prepared") return harness.feedClient(world, { type: "prepared" });
  // The data's end on the data channel, the manifest's last part on control, then `sent`.
  send(world, { to: "server", channel: "data", what: "data end" });
  send(world, {
    to: "server",
    channel: "control",
    what: "manifest part",
    message: { type: "part", of: "manifest", last: true },
  });
  harness.feedClient(world, { type: "sent" });
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
    return harness.feedServer(world, {
      type: "opened",
      snapshotId: "s1",
      hasParent: world.hasParent,
      parentHasLines: world.parentHasLines,
    });
  }
  if (owed === "committed" && commitFails) {
    world.faults.push("the commit failed");
    return harness.feedServer(world, { type: "commit-failed", reason: "ENOSPC" });
  }
  if (owed === "committed") {
    return harness.feedServer(world, { type: "committed", snapshotId: "s1" });
  }
  if (owed === "client-report") {
    return harness.feedServer(world, { type: "client-report", reason: world.clientReason });
  }
  harness.feedServer(world, { type: owed });
}

const CLIENT_OWED: readonly ClientOwed[] = ["identified", "prepared", "sent"];
const SERVER_OWED: readonly ServerOwed[] = [
  "opened",
  "parent-sent",
  "manifest-written",
  "committed",
];

const harness = new PairHarness<
  World,
  BackupClientEvent,
  BackupClientAction,
  BackupServerEvent,
  BackupServerAction,
  ClientOwed,
  ServerOwed
>({
  client: { heard: ["message", "heard"], silenceAction: "abort", apply: clientAction },
  server: {
    heard: ["message", "heard"],
    silenceAction: "abort",
    // A server waiting for the client's report keeps no time; a committing one ignores silence.
    live: (world) => !world.server.ended && !world.serverOwed.has("client-report"),
    silenceFails: (world) => !world.serverOwed.has("committed"),
    apply: serverAction,
  },
  clientPump: { owed: CLIENT_OWED, canGive: clientCanGive, give: giveClient },
  serverPump: { owed: SERVER_OWED, canGive: serverCanGive, give: giveServer },
  serverSnapshotVerb: "committed",
  receive,
  healedStep,
});

function commands(faults: boolean) {
  const healthy = harness.healthyCommands();
  if (!faults) return healthy;
  return [
    ...healthy,
    ...healthy, // faults are one draw in three
    ...healthy,
    ...harness.linkFaults(),
    fc.constant(
      new PairCommand<World>(
        "the commit fails",
        (w) => serverCanGive(w, "committed"),
        (w) => giveServer(w, "committed", true),
      ),
    ),
  ];
}

/**
 * One step of the healed link: the oldest frame arrives, else the client's pump gives what it
 * owes, else the server's pump gives one of its results (they race: which is drawn).
 */
function healedStep(world: World, pick: number): boolean {
  const frame = world.frames[0];
  if (frame !== undefined) {
    harness.deliver(world, frame.to, frame.channel);
    return true;
  }
  if (harness.giveFirst(world, harness.spec.clientPump)) return true;
  const owed = ([...world.serverOwed] as ServerOwed[]).filter((o) => serverCanGive(world, o));
  const server = owed[pick % Math.max(1, owed.length)];
  if (server === undefined) return false;
  giveServer(world, server);
  return true;
}

function property(factories: PairFactories, faults: boolean) {
  return harness.property(
    commands(faults),
    5,
    (parent) => newWorld(factories, parent!),
    fc.record({ hasParent: fc.boolean(), parentHasLines: fc.boolean() }),
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
  return harness.suite(
    `backup client and server machines as a pair (${name})`,
    "over a healthy link both sides end done, keeping time as stated",
    "over a breaking, stalling, reordering link every run ends, agreeing or with the done side's peer gone",
    (faults) => property(factories, faults),
  );
}
