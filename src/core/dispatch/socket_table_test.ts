import assert from "node:assert/strict";
import { SocketTable } from "./socket_table.ts";
import { checkCall, TRANSITIONS } from "./socket_state.ts";
import type { Address } from "./sockets.ts";

const here: Address = { kind: "network", host: "127.0.0.1", port: 1000 };
const there: Address = { kind: "network", host: "127.0.0.1", port: 2000 };

function opened(table: SocketTable<string>): number {
  const fd = table.open("handle");
  assert.ok(fd.ok);
  return fd.value;
}

Deno.test("every phase allows close and only connected sockets send and recv", () => {
  for (const [phase, row] of Object.entries(TRANSITIONS)) {
    assert.equal(row.close, "ok", `${phase} allows close`);
    const sends = row.send === "ok";
    assert.equal(sends, phase === "connected", `${phase} send verdict`);
  }
});

Deno.test("a failed socket repeats its failure's code on every call but close", () => {
  const state = { phase: "failed", code: "ECONNRESET", reason: "peer reset" } as const;
  const send = checkCall(state, "send");
  assert.ok(!send.ok && send.code === "ECONNRESET");
  assert.ok(checkCall(state, "close").ok);
});

Deno.test("bind, listen, then accept follow the table; a second listen is EINVAL", () => {
  const table = new SocketTable<string>("network");
  const fd = opened(table);
  assert.ok(table.begin(fd, "bind").ok);
  table.complete(fd, "bind", { type: "bound", local: here });
  assert.ok(table.begin(fd, "listen").ok);
  table.complete(fd, "listen", { type: "listening", backlog: 4 });
  const again = table.begin(fd, "listen");
  assert.ok(!again.ok && again.code === "EINVAL");
  assert.ok(table.begin(fd, "accept").ok);
  const second = table.begin(fd, "accept");
  assert.ok(!second.ok && second.code === "EALREADY", "one accept at a time");
});

Deno.test("a connect that is refused moves the socket to failed", () => {
  const table = new SocketTable<string>("network");
  const fd = opened(table);
  assert.ok(table.begin(fd, "connect").ok);
  table.complete(fd, "connect", { type: "error", code: "ECONNREFUSED", message: "refused" });
  const send = table.begin(fd, "send");
  assert.ok(!send.ok && send.code === "ECONNREFUSED");
});

Deno.test("recv at end of stream marks the peer closed and keeps the socket connected", () => {
  const table = new SocketTable<string>("network");
  const fd = opened(table);
  assert.ok(table.begin(fd, "connect").ok);
  table.complete(fd, "connect", { type: "connected", local: here, remote: there });
  assert.ok(table.begin(fd, "recv").ok);
  table.complete(fd, "recv", { type: "eof" });
  const entry = table.lookup(fd);
  assert.ok(entry.ok && entry.value.state.phase === "connected" && entry.value.state.peerClosed);
});

Deno.test("close forgets the descriptor: later calls and a second close are EBADF", () => {
  const table = new SocketTable<string>("network");
  const fd = opened(table);
  const closed = table.close(fd);
  assert.ok(closed.ok && closed.value.handle === "handle");
  const again = table.close(fd);
  assert.ok(!again.ok && again.code === "EBADF");
  assert.equal(table.openCount, 0);
});

Deno.test("completing a call on a descriptor closed meanwhile is ignored", () => {
  const table = new SocketTable<string>("network");
  const fd = opened(table);
  assert.ok(table.begin(fd, "connect").ok);
  assert.ok(table.close(fd).ok);
  table.complete(fd, "connect", { type: "connected", local: here, remote: there });
  assert.equal(table.openCount, 0);
});
