import assert from "node:assert/strict";
import fc from "fast-check";
import { splitIntoParts } from "../backup/protocol.ts";
import {
  BACKUP_CLIENT_ROWS,
  type BackupClientAction,
  type BackupClientInput,
  BackupClientMachine,
} from "./backup_client.ts";

const HELLO = { mode: "fs", source: "/src", incremental: true } as const;
const types = (actions: readonly BackupClientAction[]) => actions.map((a) => a.type);
const message = (body: unknown): BackupClientInput => ({ type: "message", body });
const begin = (hasParent: boolean) => message({ type: "begin", snapshotId: "s1", hasParent });
const PARENT = { id: "p", entries: [1, 2, 3] };

/** Feeds inputs, recording each (state, input) taken. */
function feeder(machine: BackupClientMachine, taken = new Set<string>()) {
  return (input: BackupClientInput) => {
    taken.add(`${machine.state}/${input.type}`);
    return machine.handle(input);
  };
}

Deno.test("a backup client says hello, reads begin and the parent, prepares, packs, and waits for committed", () => {
  const machine = new BackupClientMachine(HELLO);
  const feed = feeder(machine);
  assert.deepEqual(types(machine.start()), ["name-source"]);
  const hello = feed({ type: "named", sourceId: "/real/src" });
  assert.deepEqual(hello[0], {
    type: "send",
    channel: "control",
    body: { type: "hello", mode: "fs", source: "/src", sourceId: "/real/src", incremental: true },
  });
  assert.deepEqual(types(feed(begin(true))), ["receive"]);
  const parts = splitIntoParts("parent", PARENT).map(message);
  const last = parts.map(feed).at(-1)!;
  assert.deepEqual(last, [
    { type: "prepare", sourceId: "/real/src", snapshotId: "s1", parent: PARENT },
  ]);
  assert.deepEqual(feed({ type: "prepared" }), [{ type: "pack", snapshotId: "s1" }]);
  assert.deepEqual(types(feed({ type: "packed", manifest: { id: "s1" } })), ["send", "receive"]);
  assert.deepEqual(feed(message({ type: "committed", snapshotId: "s1" })), [
    { type: "done", snapshotId: "s1" },
  ]);
  assert.equal(machine.state, "done");
});

Deno.test("without a parent it prepares at once; a commit of another snapshot is a failure", () => {
  const machine = new BackupClientMachine(HELLO);
  machine.handle({ type: "named", sourceId: "/s" });
  assert.deepEqual(types(machine.handle(begin(false))), ["prepare"]);
  machine.handle({ type: "prepared" });
  machine.handle({ type: "packed", manifest: {} });
  const wrong = machine.handle(message({ type: "committed", snapshotId: "other" }));
  assert.deepEqual(types(wrong), ["check-server-report"]);
});

Deno.test("a failure looks for the server's report, sends failed on the error channel, and ends failed", () => {
  const machine = new BackupClientMachine(HELLO);
  const cause = new Error("source vanished");
  assert.deepEqual(types(machine.handle({ type: "failure", error: cause })), [
    "check-server-report",
  ]);
  assert.deepEqual(machine.handle({ type: "server-report", reason: "disk full" }), [
    {
      type: "send",
      channel: "error",
      body: { type: "failed", message: "source vanished" },
      bestEffort: true,
    },
    { type: "failed", error: cause, serverReason: "disk full" },
  ]);
});

Deno.test("a backup and a failed backup between them take every row of the client's table", () => {
  const taken = new Set<string>();
  const ok = new BackupClientMachine(HELLO);
  const feed = feeder(ok, taken);
  feed({ type: "named", sourceId: "/s" });
  feed(begin(true));
  splitIntoParts("parent", PARENT).map(message).forEach(feed);
  feed({ type: "prepared" });
  feed({ type: "packed", manifest: {} });
  feed(message({ type: "committed", snapshotId: "s1" }));
  const failing = new BackupClientMachine(HELLO);
  const fail = feeder(failing, taken);
  fail({ type: "failure", error: new Error("x") });
  fail({ type: "server-report", reason: undefined });
  const rows = BACKUP_CLIENT_ROWS.map((row) => `${row.state}/${row.on}`);
  assert.deepEqual(rows.filter((row) => !taken.has(row)), []);
});

Deno.test("any input sequence: nothing after an end state, failed only after the server's report was looked at", () => {
  const input = fc.oneof(
    fc.constant<BackupClientInput>({ type: "named", sourceId: "/s" }),
    fc.constant(begin(true)),
    fc.constant(begin(false)),
    ...splitIntoParts("parent", PARENT).map((p) => fc.constant(message(p))),
    fc.constant<BackupClientInput>({ type: "prepared" }),
    fc.constant<BackupClientInput>({ type: "packed", manifest: {} }),
    fc.constant(message({ type: "committed", snapshotId: "s1" })),
    fc.constant<BackupClientInput>({ type: "failure", error: new Error("x") }),
    fc.constant<BackupClientInput>({ type: "server-report", reason: undefined }),
  );
  fc.assert(fc.property(fc.array(input, { maxLength: 30 }), (inputs) => {
    const machine = new BackupClientMachine(HELLO);
    let looked = false;
    for (const each of inputs) {
      const before = machine.state;
      const actions = machine.handle(each);
      if (before === "done" || before === "failed") assert.deepEqual(actions, []);
      if (actions.some((a) => a.type === "check-server-report")) looked = true;
      if (actions.some((a) => a.type === "failed")) assert.ok(looked);
    }
  }));
});
