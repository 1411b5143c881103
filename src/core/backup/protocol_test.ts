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
