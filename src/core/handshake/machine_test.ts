import assert from "node:assert/strict";
import { STORAGE_FD_MIN } from "../dispatch/descriptor.ts";
import { parseServerConfig } from "./config.ts";
import { DB_CLIENT_TABLE, DB_SERVER_TABLE } from "./db_flow.ts";
import { FS_CLIENT_TABLE, FS_SERVER_TABLE } from "./fs_flow.ts";
import { createHandshake } from "./mod.ts";
import {
  DONE,
  type HandshakeAction,
  type HandshakeMachine,
  type HandshakeRole,
  IDLE,
  type Row,
  type SocketAction,
} from "./types.ts";

function config() {
  const parsed = parseServerConfig({
    wellKnownPort: 7000,
    stg: { id: 2, lengthBytes: 4096, regionId: crypto.randomUUID() },
  });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.value;
}

function machine(role: HandshakeRole): HandshakeMachine {
  return createHandshake(role, config());
}

function socketActions(actions: HandshakeAction[]): SocketAction[] {
  return actions.filter((a): a is SocketAction => a.type !== "established" && a.type !== "failed");
}

function only(actions: HandshakeAction[], step: string): SocketAction {
  const found = socketActions(actions).filter((a) => a.step === step);
  assert.equal(found.length, 1, `one action at step ${step} in ${JSON.stringify(actions)}`);
  return found[0]!;
}

/** Drives the fs client's net lane up to step 120 (waiting for the zeros). */
function clientAwaitingZeros(m: HandshakeMachine): { recvId: number; actions: HandshakeAction[] } {
  let actions = m.handle({ type: "start" }, 0);
  actions = m.handle({ type: "opened", id: only(actions, "112").id, fd: 3 }, 1);
  actions = m.handle({ type: "bound", id: only(actions, "114").id }, 2);
  actions = m.handle({ type: "listening", id: only(actions, "115").id }, 3);
  actions = m.handle({ type: "accepted", id: only(actions, "118").id, fd: 5 }, 4);
  return { recvId: only(actions, "120").id, actions };
}

Deno.test("start asks for the first call of every lane, each with its own id", () => {
  const actions = socketActions(machine("fs-server").handle({ type: "start" }, 0));
  assert.deepEqual(actions.map((a) => [a.step, a.type]), [["82", "socket"], ["132", "socket"]]);
  assert.notEqual(actions[0]!.id, actions[1]!.id);
});

Deno.test("a wrong well-known string fails the client remotely and closes every descriptor", () => {
  const m = machine("fs-client");
  const { recvId } = clientAwaitingZeros(m);
  const bytes = new Uint8Array(8).fill(1);
  const actions = m.handle(
    { type: "received", id: recvId, message: { type: "wellKnown", bytes } },
    5,
  );
  const closed = socketActions(actions).filter((a) => a.type === "close").map((a) => a.fd);
  assert.deepEqual(closed.sort(), [3, 5]);
  assert.equal(m.status, "failed");
  assert.equal(m.reason?.origin, "remote");
  assert.equal(m.reason?.code, "EPROTO");
  assert.deepEqual(m.openDescriptors, []);
});

Deno.test("a failed machine reports the failure to the peer on its connected sockets", () => {
  const m = machine("fs-client");
  const { recvId } = clientAwaitingZeros(m);
  const actions = m.handle({ type: "received", id: recvId, message: { type: "ack" } }, 5);
  const report = socketActions(actions).find((a) => a.type === "send");
  assert.ok(report !== undefined && report.type === "send" && report.fd === 5);
  assert.equal(report.message.type, "error");
  assert.equal(actions.at(-1)?.type, "failed");
});

Deno.test("after failure the machine stays failed and ignores later results", () => {
  const m = machine("fs-client");
  const { recvId } = clientAwaitingZeros(m);
  m.handle({ type: "peerClosed", id: recvId }, 5);
  const reason = m.reason;
  assert.equal(reason?.code, "ECONNRESET");
  assert.deepEqual(m.handle({ type: "received", id: recvId, message: { type: "ack" } }, 6), []);
  assert.deepEqual(m.handle({ type: "start" }, 7), []);
  assert.equal(m.status, "failed");
  assert.equal(m.reason, reason);
});

Deno.test("a descriptor that arrives after the failure is closed at once", () => {
  const m = machine("fs-server");
  const start = m.handle({ type: "start" }, 0);
  m.handle({ type: "error", id: only(start, "82").id, code: "ENOBUFS", message: "full" }, 1);
  assert.equal(m.reason?.origin, "local");
  const late = m.handle({ type: "opened", id: only(start, "132").id, fd: 9 }, 2);
  assert.deepEqual(socketActions(late).map((a) => [a.type, "fd" in a ? a.fd : -1]), [["close", 9]]);
});

Deno.test("a refused connect is a remote failure that closes what was opened", () => {
  const m = machine("db-client");
  let actions = m.handle({ type: "start" }, 0);
  actions = m.handle({ type: "opened", id: only(actions, "182").id, fd: 3 }, 0);
  actions = m.handle({ type: "bound", id: only(actions, "184").id }, 0);
  actions = m.handle({ type: "listening", id: only(actions, "186").id }, 0);
  const address = { kind: "network", host: "127.0.0.1", port: 50000 } as const;
  actions = m.handle({ type: "named", id: only(actions, "188").id, address }, 0);
  actions = m.handle({ type: "opened", id: only(actions, "190").id, fd: 4 }, 0);
  actions = m.handle({ type: "bound", id: only(actions, "192").id }, 0);
  const connect = only(actions, "194");
  assert.ok(connect.type === "connect" && connect.address.port === 7000);
  actions = m.handle({ type: "error", id: connect.id, code: "ECONNREFUSED", message: "no" }, 1);
  assert.deepEqual(socketActions(actions).map((a) => a.type), ["close", "close"]);
  assert.deepEqual(m.reason?.step, "194");
  assert.equal(m.reason?.origin, "remote");
});

Deno.test("the deadline fails the handshake with ETIMEDOUT, whatever the input", () => {
  const m = machine("db-server");
  const start = m.handle({ type: "start" }, 100);
  assert.equal(m.deadlineMs, 5100);
  assert.deepEqual(m.handle({ type: "tick" }, 5099), []);
  const actions = m.handle({ type: "opened", id: only(start, "222-socket").id, fd: 3 }, 5100);
  assert.equal(m.reason?.code, "ETIMEDOUT");
  assert.equal(m.reason?.origin, "local");
  assert.deepEqual(socketActions(actions).map((a) => [a.type, "fd" in a ? a.fd : -1]), [[
    "close",
    3,
  ]]);
});

Deno.test("an unknown request id and a second start are local errors", () => {
  const a = machine("fs-client");
  a.handle({ type: "start" }, 0);
  a.handle({ type: "bound", id: 999 }, 0);
  assert.equal(a.reason?.origin, "local");
  assert.equal(a.reason?.code, "EINVAL");
  const b = machine("fs-client");
  b.handle({ type: "start" }, 0);
  b.handle({ type: "start" }, 0);
  assert.equal(b.reason?.message, "start given twice");
});

Deno.test("an error message from the peer fails with the peer's code", () => {
  const m = machine("fs-client");
  const { recvId } = clientAwaitingZeros(m);
  const message = { type: "error", code: "ENOBUFS", text: "no block" } as const;
  m.handle({ type: "received", id: recvId, message }, 5);
  assert.equal(m.reason?.code, "ENOBUFS");
  assert.equal(m.reason?.origin, "remote");
  assert.match(m.reason?.message ?? "", /no block/);
});

Deno.test("a storage descriptor where a network one is due is a local error", () => {
  const m = machine("fs-server");
  const start = m.handle({ type: "start" }, 0);
  m.handle({ type: "opened", id: only(start, "82").id, fd: STORAGE_FD_MIN }, 0);
  assert.equal(m.reason?.code, "EINVAL");
  assert.deepEqual(m.openDescriptors, []);
});

const TABLES: Record<string, readonly Row[]> = {
  "fs-server": FS_SERVER_TABLE,
  "fs-client": FS_CLIENT_TABLE,
  "db-client": DB_CLIENT_TABLE,
  "db-server": DB_SERVER_TABLE,
};

Deno.test("every table state is entered by some row and every lane reaches DONE", () => {
  for (const [role, table] of Object.entries(TABLES)) {
    const entered = new Set(table.map((r) => r.next));
    for (const r of table) {
      assert.ok(r.state === IDLE || entered.has(r.state), `${role}: ${r.state} is entered`);
    }
    for (const lane of new Set(table.map((r) => r.lane))) {
      assert.ok(table.some((r) => r.lane === lane && r.next === DONE), `${role}/${lane} ends`);
    }
  }
});
