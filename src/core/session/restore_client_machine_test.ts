import assert from "node:assert/strict";
import {
  type RestoreClientEvent,
  RestoreClientMachine,
  type RestoreClientRecord,
  restoreClientTableMarkdown,
} from "./restore_client_machine.ts";

const TIMES = { keepaliveMs: 100, peerSilentMs: 1_000 };

function feed(machine: RestoreClientMachine, events: RestoreClientEvent[]): string[] {
  return events.flatMap((event) => machine.handle(event).map((a) => a.type));
}

const message = (atMs: number, body: Record<string, unknown>): RestoreClientEvent => ({
  type: "message",
  atMs,
  message: body as { type: string },
});
const record = (atMs: number, kind: RestoreClientRecord["kind"], index?: number) => ({
  type: "record" as const,
  atMs,
  record: { kind, index },
});

/** A machine that took the manifest of s1 (archives a1, a2) and asked for a1's 2 members. */
function streamingA1(): RestoreClientMachine {
  const machine = new RestoreClientMachine(TIMES, 0);
  feed(machine, [
    message(1, { type: "restore-begin", snapshot: "s1" }),
    message(2, { type: "part", of: "manifest" }),
    { type: "manifest", atMs: 3, snapshotId: "s1", archives: ["a1", "a2"] },
    { type: "archive-wanted", atMs: 4, archive: "a1", members: 2 },
  ]);
  assert.equal(machine.state, "streaming");
  return machine;
}

Deno.test("a restore client takes the manifest, writes each member asked for, and is done on the server's restore-done", () => {
  const machine = new RestoreClientMachine(TIMES, 0);
  assert.deepEqual(
    feed(machine, [
      message(1, { type: "restore-begin", snapshot: "s1" }),
      message(2, { type: "part", of: "manifest" }),
      message(2, { type: "part", of: "manifest" }),
      { type: "manifest", atMs: 3, snapshotId: "s1", archives: ["a1"] },
      { type: "archive-wanted", atMs: 4, archive: "a1", members: 2 },
      record(5, "head", 1),
      record(6, "end", 1),
      { type: "written", atMs: 7 },
      record(8, "problem", 0),
      record(9, "archive-end"),
      { type: "restored", atMs: 10 },
      message(11, { type: "restore-done", snapshot: "s1" }),
    ]),
    [
      "take-manifest-part",
      "take-manifest-part",
      "write-target",
      "request-archive",
      "write-member",
      "end-member",
      "report-progress",
      "list-problem",
      "archive-done",
      "send-end",
      "done",
    ],
  );
  assert.equal(machine.state, "done");
});

Deno.test("a restore client fails on a message out of order or of another snapshot", () => {
  const cases: [RestoreClientEvent[], RegExp][] = [
    [
      [message(1, { type: "part", of: "manifest" })],
      /unexpected part message while awaiting-begin/,
    ],
    [[
      message(1, { type: "restore-begin", snapshot: "s1" }),
      message(2, {
        type: "part",
        of: "parent",
      }),
    ], /unexpected part/],
    [[message(1, { type: "restore-begin", snapshot: "s1" }), {
      type: "manifest",
      atMs: 2,
      snapshotId: "s2",
      archives: [],
    }], /manifest s2, not s1/],
    [[
      message(1, { type: "restore-begin", snapshot: "s1" }),
      { type: "manifest", atMs: 2, snapshotId: "s1", archives: [] },
      message(3, { type: "restore-done", snapshot: "s1" }), // before the end request
    ], /unexpected restore-done message while writing/],
    [[
      message(1, { type: "restore-begin", snapshot: "s1" }),
      { type: "manifest", atMs: 2, snapshotId: "s1", archives: [] },
      { type: "restored", atMs: 3 },
      message(4, { type: "restore-done", snapshot: "s9" }),
    ], /the server ended s9, not s1/],
  ];
  for (const [events, reason] of cases) {
    const machine = new RestoreClientMachine(TIMES, 0);
    feed(machine, events);
    assert.equal(machine.state, "failed", String(reason));
    assert.match(machine.failureReason, reason);
  }
});

Deno.test("a restore client fails on a record naming a member not asked for, named twice, or out of place", () => {
  const cases: [RestoreClientEvent[], RegExp][] = [
    [[record(5, "head", 2)], /member 2 of archive a1 was not asked for \(2 were\)/],
    [[record(5, "problem", 0), record(6, "head", 0)], /member 0 of archive a1 came twice/],
    [[record(5, "piece")], /a piece record between members/],
    [[record(5, "end", 0)], /an? end record between members/],
    [[record(5, "head", 0), record(6, "head", 1)], /a head record inside member 0/],
    [[record(5, "head", 0), record(6, "end", 1)], /a end record inside member 0/],
    [[record(5, "head", 0), record(6, "archive-end")], /archive-end record inside member 0/],
  ];
  for (const [events, reason] of cases) {
    const machine = streamingA1();
    feed(machine, events);
    assert.equal(machine.state, "failed", String(reason));
    assert.match(machine.failureReason, reason);
  }
});

Deno.test("a restore client asks for each archive of the plan once", () => {
  for (const archive of ["a1", "elsewhere"]) {
    const machine = streamingA1();
    feed(machine, [record(5, "archive-end")]);
    const actions = machine.handle({ type: "archive-wanted", atMs: 6, archive, members: 1 });
    assert.equal(actions.at(-1)?.type, "failed");
    assert.match(
      machine.failureReason,
      new RegExp(`archive ${archive}: not of the plan, or twice`),
    );
  }
});

Deno.test("a file the target refuses is that file's problem: its member is read past and listed, and the restore goes on", () => {
  const machine = streamingA1();
  assert.deepEqual(
    feed(machine, [
      record(5, "head", 0),
      { type: "write-failed", atMs: 6, scope: "file", reason: "EACCES" }, // mid-member
      record(7, "end", 0),
      record(8, "head", 1),
      record(9, "end", 1),
      { type: "write-failed", atMs: 10, scope: "file", reason: "hash mismatch" }, // after its end
      record(11, "archive-end"),
    ]),
    ["write-member", "skip-member", "list-problem", "write-member", "end-member", "list-problem"]
      .concat("archive-done"),
  );
  assert.equal(machine.state, "writing");
});

Deno.test("a member the server could not read ends its pieces with the server's reason, then its file is listed", () => {
  const machine = streamingA1();
  const actions = [record(5, "head", 0), record(6, "problem", 0)].flatMap((e) => machine.handle(e));
  assert.deepEqual(actions.at(-1), { type: "end-member", index: 0, unreadable: true });
  assert.deepEqual(
    machine.handle({ type: "write-failed", atMs: 7, scope: "file", reason: "read-failed" }),
    [{ type: "list-problem", index: 0 }],
  );
  assert.equal(machine.state, "streaming");
});

Deno.test("a write failure that is not a file's problem fails the restore", () => {
  const machine = streamingA1();
  feed(machine, [
    record(5, "head", 0),
    { type: "write-failed", atMs: 6, scope: "restore", reason: "ENOSPC on the target" },
  ]);
  assert.equal(machine.state, "failed");
  assert.equal(machine.failureReason, "ENOSPC on the target");
});

Deno.test("the server's failed report, on control or the error channel, fails a live client with the server's reason", () => {
  for (
    const event of [
      message(9, { type: "failed", message: "EIO reading the archive" }),
      { type: "server-report", atMs: 9, reason: "EIO reading the archive" } as const,
    ]
  ) {
    const machine = streamingA1();
    const actions = machine.handle(event);
    assert.deepEqual(actions, [
      { type: "abort" },
      {
        type: "failed",
        reason: "EIO reading the archive",
        serverReason: "EIO reading the archive",
      },
    ]);
  }
});

Deno.test("a restore client sends keepalives and gives up on a silent server, in every live state", () => {
  const machine = streamingA1();
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 50 }]), []);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 104 }]), ["send-keepalive"]);
  feed(machine, [record(500, "head", 0)]); // heard at 500
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 1_400 }]), ["send-keepalive"]);
  assert.deepEqual(feed(machine, [{ type: "tick", atMs: 1_500 }]), ["abort", "failed"]);
  assert.match(machine.failureReason, /the server was silent for 1000 ms/);
  assert.deepEqual(feed(machine, [record(1_600, "end", 0)]), [], "nothing after the end");
});

Deno.test("docs/session.md prints the restore client's table as the code has it", async () => {
  const doc = await Deno.readTextFile(new URL("../../../docs/session.md", import.meta.url));
  assert.ok(
    doc.includes(restoreClientTableMarkdown()),
    "docs/session.md's restore client table differs from restoreClientTableMarkdown()",
  );
});
