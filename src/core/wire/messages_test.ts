import assert from "node:assert/strict";
import {
  decodeMessage,
  encodeMessage,
  ERROR_TEXT_BYTES_MAX,
  errorMessage,
  MESSAGE_BYTES_MAX,
  wellKnownString,
} from "./messages.ts";

Deno.test("the well-known string is eight zero bytes behind tag 1", () => {
  const payload = encodeMessage({ type: "wellKnown", bytes: wellKnownString() });
  assert.deepEqual([...payload], [1, 0, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("a descriptor is a big-endian u32 behind tag 2", () => {
  assert.deepEqual([...encodeMessage({ type: "descriptor", fd: 0x01020304 })], [2, 1, 2, 3, 4]);
});

Deno.test("the STG length round-trips up to 2^53 - 1 and rejects 2^53", () => {
  const max = encodeMessage({ type: "stgLength", lengthBytes: Number.MAX_SAFE_INTEGER });
  const back = decodeMessage(max);
  assert.ok(back.ok && back.value.type === "stgLength");
  assert.equal(back.value.lengthBytes, Number.MAX_SAFE_INTEGER);
  const over = Uint8Array.of(4, 0, 0x20, 0, 0, 0, 0, 0, 0);
  assert.equal(decodeMessage(over).ok, false);
});

Deno.test("a region id is its UUID's 16 bytes behind tag 8 and round-trips", () => {
  const regionId = "0123abcd-4567-89ef-fedc-ba9876543210";
  const payload = encodeMessage({ type: "regionId", regionId });
  assert.deepEqual([...payload.subarray(0, 5)], [8, 0x01, 0x23, 0xab, 0xcd]);
  assert.equal(payload.length, 17);
  assert.deepEqual(decodeMessage(payload), { ok: true, value: { type: "regionId", regionId } });
  assert.equal(decodeMessage(payload.subarray(0, 16)).ok, false, "a short region id");
  assert.throws(() => encodeMessage({ type: "regionId", regionId: "not-a-uuid" }), TypeError);
});

Deno.test("decode returns EMSGSIZE for a payload over the maximum", () => {
  const result = decodeMessage(new Uint8Array(MESSAGE_BYTES_MAX + 1).fill(1));
  assert.ok(!result.ok);
  assert.equal(result.code, "EMSGSIZE");
});

Deno.test("decode returns EPROTO for empty, unknown, short and out-of-range payloads", () => {
  const payloads = [[], [0], [99], [2, 0, 0], [5, 2, 0, 1], [5, 0, 0, 0], [7], [7, 200], [6, 0]];
  for (const bytes of payloads) {
    const result = decodeMessage(Uint8Array.from(bytes));
    assert.ok(!result.ok, `[${bytes}] is refused`);
    assert.equal(result.code, "EPROTO", `[${bytes}]`);
  }
});

Deno.test("decode refuses an error text that is not UTF-8", () => {
  const result = decodeMessage(Uint8Array.of(7, 0, 0xff, 0xfe));
  assert.ok(!result.ok && result.code === "EPROTO");
});

Deno.test("encode throws a TypeError for a message outside its schema", () => {
  assert.throws(() => encodeMessage({ type: "port", kind: "network", port: 0 }), TypeError);
});

Deno.test("errorMessage cuts long multi-byte text at a character boundary", () => {
  const message = errorMessage("EPROTO", "é".repeat(500));
  const bytes = new TextEncoder().encode(message.text).length;
  assert.ok(bytes <= ERROR_TEXT_BYTES_MAX && bytes >= ERROR_TEXT_BYTES_MAX - 1);
  const back = decodeMessage(encodeMessage(message));
  assert.ok(back.ok);
  assert.deepEqual(back.value, message);
});
