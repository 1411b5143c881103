import assert from "node:assert/strict";
import fc from "fast-check";
import { splitIntoParts } from "../backup/protocol.ts";
import {
  BACKUP_SERVER_ROWS,
  type BackupServerAction,
  type BackupServerInput,
  BackupServerMachine,
} from "./backup_server.ts";
import { GRACE_ROWS } from "./grace.ts";

const HELLO = { type: "hello", mode: "fs", source: "/src", sourceId: "/src", incremental: true };
const MANIFEST = { id: "x", entries: ["a", "b"] };
const types = (actions: readonly BackupServerAction[]) => actions.map((a) => a.type);
const message = (body: unknown): BackupServerInput => ({ type: "message", body });
const parts = (value: unknown) => splitIntoParts("manifest", value).map(message);

/** Drives a machine to the transfer state, with or without a parent. */
function transferring(parent: unknown = null): BackupServerMachine {
  const machine = new BackupServerMachine();
  assert.deepEqual(types(machine.start()), ["receive"]);
  assert.deepEqual(types(machine.handle(message(HELLO))), ["open"]);
  machine.handle({ type: "opened", snapshotId: "s1", parent });
  assert.equal(machine.state, "transfer");
  return machine;
}

Deno.test("a backup server sends begin and the parent's parts, then reads the client", () => {
  const machine = new BackupServerMachine();
  machine.start();
  machine.handle(message(HELLO));
  const actions = machine.handle({ type: "opened", snapshotId: "s1", parent: { id: "p" } });
  assert.deepEqual(types(actions), ["send", "send", "receive"]);
  assert.deepEqual((actions[0] as { body: unknown }).body, {
    type: "begin",
    snapshotId: "s1",
    hasParent: true,
  });
  assert.equal((actions[1] as { body: { type: string } }).body.type, "part");
});

Deno.test("it commits only once the data ended and the manifest is whole, in either order", () => {
  for (const dataFirst of [true, false]) {
    const machine = transferring();
    if (dataFirst) assert.deepEqual(machine.handle({ type: "data-end" }), []);
    const last = parts(MANIFEST).map((input) => machine.handle(input)).at(-1)!;
    const commit = dataFirst ? last : machine.handle({ type: "data-end" });
    assert.deepEqual(commit, [{ type: "commit", manifest: MANIFEST }]);
    assert.equal(machine.state, "committing");
  }
});

Deno.test("past the commit point the snapshot stands: committed is sent best effort, a failure changes nothing", () => {
  const machine = transferring();
  machine.handle({ type: "data-end" });
  parts(MANIFEST).forEach((input) => machine.handle(input));
  const actions = machine.handle({ type: "committed", snapshotId: "s1" });
  assert.deepEqual(types(actions), ["send", "done"]);
  assert.equal((actions[0] as { bestEffort?: boolean }).bestEffort, true);
  assert.deepEqual(machine.handle({ type: "failure", error: new Error("late") }), []);
  assert.equal(machine.state, "done");
});

Deno.test("a failure aborts, waits the client-report grace, then sends failed on the error channel", () => {
  const machine = transferring();
  const cause = new Error("disk full");
  assert.deepEqual(machine.handle({ type: "failure", error: cause }), [
    { type: "abort" },
    { type: "await-client-report", waitMs: GRACE_ROWS.clientReportWait.waitMs },
  ]);
  const end = machine.handle({ type: "client-report", reason: "source vanished" });
  assert.deepEqual(end, [
    {
      type: "send",
      channel: "error",
      body: { type: "failed", message: "disk full" },
      bestEffort: true,
    },
    { type: "failed", error: cause, clientReason: "source vanished" },
  ]);
  assert.equal(machine.state, "failed");
});

Deno.test("a message out of order is a protocol failure, and nothing is read past the manifest", () => {
  const machine = transferring();
  assert.deepEqual(types(machine.handle(message(HELLO))), ["abort", "await-client-report"]);
  const whole = transferring();
  const actions = parts(MANIFEST).map((input) => whole.handle(input));
  assert.ok(actions.slice(0, -1).every((a) => types(a).join() === "receive"));
  assert.deepEqual(actions.at(-1), []); // whole, the data not ended: no read, no commit yet
});

Deno.test("a backup and a failed backup between them take every row of the table", () => {
  const taken = new Set<string>();
  const feed = (machine: BackupServerMachine, input: BackupServerInput) => {
    taken.add(`${machine.state}/${input.type}`);
    machine.handle(input);
  };
  const ok = transferring();
  feed(ok, message({ type: "progress", files: 1, bytes: 1, totalBytes: 1 }));
  feed(ok, { type: "data-end" });
  parts(MANIFEST).forEach((input) => feed(ok, input));
  feed(ok, { type: "committed", snapshotId: "s1" });
  const failing = new BackupServerMachine();
  feed(failing, message(HELLO));
  feed(failing, { type: "opened", snapshotId: "s2", parent: null });
  feed(failing, { type: "failure", error: new Error("x") });
  feed(failing, { type: "client-report", reason: undefined });
  const rows = BACKUP_SERVER_ROWS.map((row) => `${row.state}/${row.on}`);
  assert.deepEqual(rows.filter((row) => !taken.has(row)), []);
});

Deno.test("any input sequence: it never leaves an end state, and it fails only after an abort", () => {
  const input = fc.oneof(
    fc.constant<BackupServerInput>(message(HELLO)),
    fc.constant<BackupServerInput>({ type: "opened", snapshotId: "s", parent: null }),
    fc.constant<BackupServerInput>({ type: "data-end" }),
    fc.constant<BackupServerInput>({ type: "committed", snapshotId: "s" }),
    fc.constant<BackupServerInput>({ type: "failure", error: new Error("x") }),
    fc.constant<BackupServerInput>({ type: "client-report", reason: undefined }),
    fc.constant<BackupServerInput>(
      message({ type: "progress", files: 1, bytes: 1, totalBytes: 1 }),
    ),
    ...parts(MANIFEST).map((p) => fc.constant(p)),
  );
  fc.assert(fc.property(fc.array(input, { maxLength: 30 }), (inputs) => {
    const machine = new BackupServerMachine();
    let aborted = false;
    for (const each of inputs) {
      const before = machine.state;
      const actions = machine.handle(each);
      if (before === "done" || before === "failed") assert.deepEqual(actions, []);
      if (actions.some((a) => a.type === "abort")) aborted = true;
      if (actions.some((a) => a.type === "failed")) assert.ok(aborted);
      if (actions.some((a) => a.type === "done")) assert.equal(machine.state, "done");
    }
  }));
});
