import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseSessionMessage,
  PART_CHARS_MAX,
  PartJoiner,
  SessionProtocolError,
  splitIntoParts,
} from "./protocol.ts";

Deno.test("any JSON value survives splitting into parts and joining them again", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.string({ maxLength: 3 * PART_CHARS_MAX }), (value, long) => {
      for (const original of [value, { long }]) {
        const joiner = new PartJoiner("manifest");
        for (const part of splitIntoParts("manifest", original)) {
          joiner.add(parseSessionMessage(part, "part"));
        }
        assert.ok(joiner.done);
        assert.deepEqual(joiner.value(), JSON.parse(JSON.stringify(original)));
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("parts out of order, of the wrong value, or after the last are protocol errors", () => {
  const parts = splitIntoParts("parent", { text: "x".repeat(PART_CHARS_MAX * 2) });
  assert.equal(parts.length, 3);
  assert.throws(() => new PartJoiner("parent").add(parts[1]!), SessionProtocolError);
  assert.throws(() => new PartJoiner("manifest").add(parts[0]!), SessionProtocolError);
  const joiner = new PartJoiner("parent");
  for (const part of parts) joiner.add(part);
  assert.throws(() => joiner.add(parts[2]!), SessionProtocolError);
  assert.throws(() => new PartJoiner("parent").value(), SessionProtocolError);
});

Deno.test("parseSessionMessage() refuses malformed and unexpected messages, and names a peer's failure", () => {
  assert.throws(() => parseSessionMessage({ type: "hello" }), /malformed session message/);
  assert.throws(() => parseSessionMessage({ type: "nope" }), SessionProtocolError);
  assert.throws(
    () => parseSessionMessage({ type: "committed", snapshotId: "s" }, "begin"),
    /expected a begin message, got committed/,
  );
  assert.throws(
    () => parseSessionMessage({ type: "failed", message: "disk full" }, "begin"),
    /peer failed: disk full/,
  );
});

Deno.test("the job messages between a server and an agent validate, and malformed ones are refused", () => {
  const nonce = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));
  const good: unknown[] = [
    { type: "auth-challenge", nonce, insecure: false },
    { type: "auth-response", nonce, mac: nonce, insecure: false },
    { type: "auth-proof", mac: null },
    { type: "auth-ok" },
    {
      type: "job",
      kind: "backup",
      mode: "db",
      dataPath: "storage",
      source: "/d.db",
      incremental: false,
    },
    {
      type: "job",
      kind: "restore",
      mode: "fs",
      dataPath: "network",
      target: "/t",
      path: null,
      overwrite: false,
      preservePermissions: true,
    },
    { type: "job", kind: "validate", mode: "fs", dataPath: "storage" },
    { type: "fs-flow", wellKnownPort: 7000 },
    { type: "db-flow", host: "10.0.0.2", wellKnownPort: 7000 },
    {
      type: "flow-result",
      established: false,
      reason: { origin: "local", code: "ENOBUFS", step: "162", message: "no free control block" },
    },
    { type: "data-path", path: "network", reason: "the storage path could not be set up" },
    { type: "restore-begin", snapshot: "s" },
    { type: "restore-done", snapshot: "s" },
  ];
  for (const message of good) {
    assert.deepEqual(parseSessionMessage(message), message, JSON.stringify(message));
  }
  const bad: unknown[] = [
    { type: "auth-challenge", nonce: "short", insecure: false },
    {
      type: "job",
      kind: "backup",
      mode: "fs",
      dataPath: "storage",
      source: "/x\0y",
      incremental: false,
    },
    { type: "job", kind: "erase", mode: "fs", dataPath: "storage" },
    { type: "fs-flow", wellKnownPort: 0 },
    {
      type: "flow-result",
      established: false,
      reason: { origin: "local", code: "EWHAT", step: "1", message: "" },
    },
    { type: "restore-begin", snapshot: "s", ancestry: ["s"] },
    { type: "restore-done" },
  ];
  for (const message of bad) {
    assert.throws(
      () => parseSessionMessage(message),
      SessionProtocolError,
      JSON.stringify(message),
    );
  }
});
