import assert from "node:assert/strict";
import {
  type BackupServerAction,
  type BackupServerEvent,
  BackupServerMachine,
  backupServerTableMarkdown,
} from "./backup_server_machine.ts";

const TIMES = { keepaliveMs: 100, peerSilentMs: 1_000 };

function types(actions: BackupServerAction[]): string[] {
  return actions.map((a) => a.type);
}

function feed(machine: BackupServerMachine, events: BackupServerEvent[]): string[] {
  return events.flatMap((event) => types(machine.handle(event)));
}

Deno.test("a backup with a parent commits only after the data ended and the manifest is written", () => {
  const machine = new BackupServerMachine(TIMES, 0);
  assert.deepEqual(
    feed(machine, [
      { type: "message", atMs: 1, message: { type: "hello" } },
      { type: "opened", atMs: 2, snapshotId: "s1", hasParent: true },
      { type: "message", atMs: 3, message: { type: "more", of: "parent", upTo: 70 } },
      { type: "parent-sent", atMs: 4 },
      { type: "manifest-written", atMs: 5 },
    ]),
    ["open", "send-begin", "stream-parent", "receive", "grant-parent"],
  );
  assert.deepEqual(feed(machine, [{ type: "data-end", atMs: 6 }]), ["commit"]);
  assert.deepEqual(feed(machine, [{ type: "committed", atMs: 7, snapshotId: "s1" }]), [
    "send-committed",
    "done",
  ]);
  assert.equal(machine.state, "done");
  assert.deepEqual(feed(machine, [{ type: "failure", atMs: 8, reason: "late" }]), []);
});

Deno.test("a message before hello fails the session, aborts and waits for the client's report", () => {
  const machine = new BackupServerMachine(TIMES, 0);
  const actions = machine.handle({ type: "message", atMs: 1, message: { type: "progress" } });
  assert.deepEqual(actions, [{ type: "abort" }, { type: "await-client-report", waitMs: 1_000 }]);
  const end = machine.handle({ type: "client-report", atMs: 2, reason: "disk full" });
  assert.deepEqual(end[1], {
    type: "failed",
    reason: "protocol: progress before hello",
    clientReason: "disk full",
  });
  assert.equal(machine.state, "failed");
});

Deno.test("an idle server sends a keepalive and a silent client fails the session", () => {
  const machine = new BackupServerMachine(TIMES, 0);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 99 }]), []);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 100 }]), ["send-keepalive"]);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 150 }]), []);
  assert.deepEqual(feed(machine, [{ type: "heard", atMs: 900 }, { type: "tick", atMs: 1_800 }]), [
    "send-keepalive",
  ]);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 1_900 }]), [
    "abort",
    "await-client-report",
  ]);
});

Deno.test("once committing, a broken channel or a silent client changes nothing; the commit decides", () => {
  const machine = new BackupServerMachine(TIMES, 0);
  feed(machine, [
    { type: "message", atMs: 1, message: { type: "hello" } },
    { type: "opened", atMs: 2, snapshotId: "s1", hasParent: false },
    { type: "manifest-written", atMs: 3 },
    { type: "data-end", atMs: 4 },
  ]);
  assert.equal(machine.state, "committing");
  assert.deepEqual(feed(machine, [{ type: "failure", atMs: 5, reason: "control reset" }]), []);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 5_000 }]), ["send-keepalive"]);
  assert.deepEqual(feed(machine, [{ type: "commit-failed", atMs: 5_001, reason: "ENOSPC" }]), [
    "abort",
    "await-client-report",
  ]);
  assert.deepEqual(machine.handle({ type: "client-report", atMs: 5_002, reason: undefined })[1], {
    type: "failed",
    reason: "ENOSPC",
    clientReason: undefined,
  });
});

Deno.test("a keepalive goes out keepaliveMs after the last keepalive, whatever else was sent", () => {
  const machine = new BackupServerMachine(TIMES, 0);
  feed(machine, [
    { type: "message", atMs: 60, message: { type: "hello" } },
    { type: "opened", atMs: 90, snapshotId: "s1", hasParent: false },
  ]);
  // `begin` went out at 90 on the control channel only: the other channels still need one.
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 100 }]), ["send-keepalive"]);
});

Deno.test("a machine refuses times where the silence rule is shorter than the keepalive rule", () => {
  assert.throws(
    () => new BackupServerMachine({ keepaliveMs: 100, peerSilentMs: 100 }, 0),
    /peerSilentMs/,
  );
});

Deno.test("docs/session.md prints the backup server's table as the code has it", async () => {
  const doc = await Deno.readTextFile(new URL("../../../docs/session.md", import.meta.url));
  assert.ok(
    doc.includes(backupServerTableMarkdown()),
    "docs/session.md is out of date: paste backupServerTableMarkdown() into it",
  );
});

Deno.test("a failing server keeps sending keepalives while it waits for the client's report, and takes a late parent end while committing", () => {
  const failing = new BackupServerMachine(TIMES, 0);
  feed(failing, [{ type: "message", atMs: 1, message: { type: "progress" } }]);
  assert.equal(failing.state, "failing");
  assert.deepEqual(feed(failing, [{ type: "tick", atMs: 5_000 }]), ["send-keepalive"]);

  const committing = new BackupServerMachine(TIMES, 0);
  feed(committing, [
    { type: "message", atMs: 1, message: { type: "hello" } },
    { type: "opened", atMs: 2, snapshotId: "s1", hasParent: true },
    { type: "data-end", atMs: 3 },
    { type: "manifest-written", atMs: 4 },
  ]);
  assert.deepEqual(feed(committing, [{ type: "parent-sent", atMs: 5 }]), []);
  assert.equal(committing.state, "committing");
});

Deno.test("a server offers run lines before the parent's lines only when the parent's file has the line layout", () => {
  const offered = new BackupServerMachine(TIMES, 0);
  offered.handle({ type: "message", atMs: 1, message: { type: "hello" } });
  const withLines = offered.handle({
    type: "opened",
    atMs: 2,
    snapshotId: "s1",
    hasParent: true,
    parentHasLines: true,
  });
  assert.deepEqual(types(withLines), ["send-begin", "offer-run-lines", "stream-parent", "receive"]);
  assert.deepEqual(withLines.at(-1), { type: "receive", runLines: true });
  for (
    const opened of [
      { hasParent: true, parentHasLines: false },
      { hasParent: true },
      { hasParent: false, parentHasLines: true },
    ]
  ) {
    const machine = new BackupServerMachine(TIMES, 0);
    machine.handle({ type: "message", atMs: 1, message: { type: "hello" } });
    const actions = machine.handle({ type: "opened", atMs: 2, snapshotId: "s1", ...opened });
    assert.ok(!types(actions).includes("offer-run-lines"), JSON.stringify(opened));
    assert.deepEqual(actions.at(-1), { type: "receive", runLines: false }, JSON.stringify(opened));
  }
});
