import assert from "node:assert/strict";
import { decodeFrameHeader, encodeFrame, FRAME_HEADER_BYTES } from "./frame.ts";

Deno.test("encodeFrame() prefixes the big-endian payload length", () => {
  const framed = encodeFrame(new Uint8Array([7, 8, 9]));
  assert.ok(framed.ok);
  assert.deepEqual([...framed.value], [0, 0, 0, 3, 7, 8, 9]);
});

Deno.test("encodeFrame() refuses a payload over the maximum with EMSGSIZE", () => {
  const framed = encodeFrame(new Uint8Array(11), 10);
  assert.ok(!framed.ok && framed.code === "EMSGSIZE");
});

Deno.test("decodeFrameHeader() refuses an announced length over the maximum", () => {
  const header = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
  const length = decodeFrameHeader(header, 1024);
  assert.ok(!length.ok && length.code === "EMSGSIZE");
  assert.match(length.message, /4294967295-byte frame/);
});

Deno.test("decodeFrameHeader() reads a header inside a larger buffer", () => {
  const buffer = new Uint8Array([9, 0, 0, 1, 0, 9]);
  const length = decodeFrameHeader(buffer.subarray(1, 1 + FRAME_HEADER_BYTES));
  assert.ok(length.ok && length.value === 256);
});

Deno.test("a frame maximum outside [0, 16 MiB] is a RangeError", () => {
  assert.throws(() => encodeFrame(new Uint8Array(0), -1), RangeError);
  assert.throws(() => encodeFrame(new Uint8Array(0), 2 ** 30), RangeError);
});
