import assert from "node:assert/strict";
import {
  type BackupClientAction,
  type BackupClientEvent,
  BackupClientMachine,
  backupClientTableMarkdown,
} from "./backup_client_machine.ts";

const TIMES = { keepaliveMs: 100, peerSilentMs: 1_000 };

function feed(machine: BackupClientMachine, events: BackupClientEvent[]): string[] {
  return events.flatMap((event) => machine.handle(event).map((a: BackupClientAction) => a.type));
}

const begin = (atMs: number, hasParent = true): BackupClientEvent => ({
  type: "message",
  atMs,
  message: { type: "begin", snapshotId: "s1", hasParent },
});

Deno.test("a backup client says hello, prepares on begin, sends, and is done on its snapshot's committed", () => {
  const machine = new BackupClientMachine(TIMES, 0);
  assert.deepEqual(
    feed(machine, [
      { type: "identified", atMs: 1, sourceId: "src" },
      begin(2),
      { type: "message", atMs: 3, message: { type: "part", of: "parent" } },
      { type: "prepared", atMs: 4 },
      { type: "message", atMs: 5, message: { type: "more", of: "manifest", upTo: 9 } },
      { type: "sent", atMs: 6 },
      { type: "message", atMs: 7, message: { type: "more", of: "manifest", upTo: 12 } },
    ]),
    [
      "send-hello",
      "prepare",
      "take-parent-part",
      "pack-and-send",
      "grant-manifest",
      "grant-manifest",
    ],
  );
  assert.deepEqual(
    machine.handle({ type: "message", atMs: 8, message: { type: "committed", snapshotId: "s1" } }),
    [{ type: "done", snapshotId: "s1" }],
  );
  assert.equal(machine.state, "done");
  assert.deepEqual(feed(machine, [{ type: "failure", atMs: 9, reason: "late" }]), []);
});

Deno.test("a committed before the manifest went out, or of another snapshot, fails the client", () => {
  const early = new BackupClientMachine(TIMES, 0);
  feed(early, [{ type: "identified", atMs: 1, sourceId: "src" }, begin(2, false)]);
  const actions = early.handle({
    type: "message",
    atMs: 3,
    message: { type: "committed", snapshotId: "s1" },
  });
  assert.deepEqual(actions.map((a) => a.type), ["abort", "send-failed", "failed"]);
  assert.match(early.failureReason, /unexpected committed/);

  const other = new BackupClientMachine(TIMES, 0);
  feed(other, [
    { type: "identified", atMs: 1, sourceId: "src" },
    begin(2, false),
    { type: "prepared", atMs: 3 },
    { type: "sent", atMs: 4 },
  ]);
  other.handle({ type: "message", atMs: 5, message: { type: "committed", snapshotId: "s2" } });
  assert.match(other.failureReason, /server committed s2, not s1/);
});

Deno.test("a server's failed report fails the client with the server's reason as the cause", () => {
  const machine = new BackupClientMachine(TIMES, 0);
  feed(machine, [{ type: "identified", atMs: 1, sourceId: "src" }, begin(2)]);
  const actions = machine.handle({ type: "server-report", atMs: 3, reason: "repository locked" });
  assert.deepEqual(actions.at(-1), {
    type: "failed",
    reason: "repository locked",
    serverReason: "repository locked",
  });
});

Deno.test("a client sends a keepalive every keepaliveMs and fails when the server is silent", () => {
  const machine = new BackupClientMachine(TIMES, 0);
  feed(machine, [{ type: "identified", atMs: 1, sourceId: "src" }]);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 99 }]), []);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 100 }]), ["send-keepalive"]);
  assert.deepEqual(feed(machine, [{ type: "heard", atMs: 950 }, { type: "tick", atMs: 1_900 }]), [
    "send-keepalive",
  ]);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 1_950 }]), [
    "abort",
    "send-failed",
    "failed",
  ]);
  assert.match(machine.failureReason, /server was silent for 1000 ms/);
});

Deno.test("docs/session.md prints the backup client's table as the code has it", async () => {
  const doc = await Deno.readTextFile(new URL("../../../docs/session.md", import.meta.url));
  assert.ok(
    doc.includes(backupClientTableMarkdown()),
    "docs/session.md is out of date: paste backupClientTableMarkdown() into it",
  );
});

Deno.test("a backup client sends run lines only when a more of manifest granting 0 came while it prepared (the server's offer)", () => {
  const packAction = (events: BackupClientEvent[]) => {
    const machine = new BackupClientMachine(TIMES, 0);
    machine.handle({ type: "identified", atMs: 1, sourceId: "src" });
    machine.handle(begin(2));
    for (const event of events) machine.handle(event);
    return machine.handle({ type: "prepared", atMs: 9 }).find((a) => a.type === "pack-and-send");
  };
  const more = (upTo: number): BackupClientEvent => ({
    type: "message",
    atMs: 3,
    message: { type: "more", of: "manifest", upTo },
  });
  const part: BackupClientEvent = {
    type: "message",
    atMs: 4,
    message: { type: "part", of: "parent" },
  };
  assert.deepEqual(packAction([more(0), part]), { type: "pack-and-send", runLines: true });
  assert.deepEqual(packAction([part]), { type: "pack-and-send", runLines: false });
  assert.deepEqual(packAction([more(70), part]), { type: "pack-and-send", runLines: false });
  const late = new BackupClientMachine(TIMES, 0);
  feed(late, [{ type: "identified", atMs: 1, sourceId: "src" }, more(0)]);
  assert.equal(late.state, "failed", "an offer before begin is a protocol failure");
});
