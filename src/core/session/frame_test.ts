import assert from "node:assert/strict";
import {
  CONTROL_FRAMING,
  DATA_CHUNK_BYTES_MAX,
  decodeHeader,
  encodeHeader,
  MESSAGE_BYTES_MAX,
  SESSION_FRAMING,
  SessionTag,
} from "./frame.ts";

Deno.test("a session header round-trips tag, length and checksum", () => {
  const header = { tag: SessionTag.data, length: 1234, checksum: 0xdeadbeef };
  const bytes = encodeHeader(SESSION_FRAMING, header, DATA_CHUNK_BYTES_MAX);
  assert.ok(bytes.ok);
  assert.deepEqual(decodeHeader(SESSION_FRAMING, bytes.value, DATA_CHUNK_BYTES_MAX), {
    ok: true,
    value: header,
  });
});

Deno.test("a control header is the 4-byte length alone", () => {
  const bytes = encodeHeader(CONTROL_FRAMING, { tag: 9, length: 258, checksum: 7 }, 1000);
  assert.deepEqual(bytes, { ok: true, value: new Uint8Array([0, 0, 1, 2]) });
  assert.deepEqual(decodeHeader(CONTROL_FRAMING, new Uint8Array([0, 0, 1, 2]), 1000), {
    ok: true,
    value: { tag: 0, length: 258, checksum: 0 },
  });
});

Deno.test("exactly the maximum passes and one byte more is EMSGSIZE, writing and reading", () => {
  const at = (length: number) => ({ tag: SessionTag.message, length, checksum: 0 });
  assert.ok(encodeHeader(SESSION_FRAMING, at(MESSAGE_BYTES_MAX), MESSAGE_BYTES_MAX).ok);
  const over = encodeHeader(SESSION_FRAMING, at(MESSAGE_BYTES_MAX + 1), MESSAGE_BYTES_MAX);
  assert.equal(!over.ok && over.code, "EMSGSIZE");
  const forged = encodeHeader(SESSION_FRAMING, at(MESSAGE_BYTES_MAX + 1), Infinity);
  assert.ok(forged.ok);
  // The reader's maximum is the tag's, whatever larger bound the caller passes.
  const read = decodeHeader(SESSION_FRAMING, forged.value, DATA_CHUNK_BYTES_MAX);
  assert.equal(!read.ok && read.code, "EMSGSIZE");
  const exact = encodeHeader(SESSION_FRAMING, at(MESSAGE_BYTES_MAX), Infinity);
  assert.ok(exact.ok && decodeHeader(SESSION_FRAMING, exact.value, DATA_CHUNK_BYTES_MAX).ok);
});

Deno.test("an unknown tag is EPROTO and a keepalive carrying bytes is EMSGSIZE", () => {
  const unknown = new Uint8Array(9);
  unknown[0] = 7;
  const refused = decodeHeader(SESSION_FRAMING, unknown, DATA_CHUNK_BYTES_MAX);
  assert.equal(!refused.ok && refused.code, "EPROTO");
  const keepalive = encodeHeader(
    SESSION_FRAMING,
    { tag: SessionTag.keepalive, length: 1, checksum: 0 },
    Infinity,
  );
  assert.ok(keepalive.ok);
  const read = decodeHeader(SESSION_FRAMING, keepalive.value, DATA_CHUNK_BYTES_MAX);
  assert.equal(!read.ok && read.code, "EMSGSIZE");
});

Deno.test("a header of the wrong size is EINVAL", () => {
  const refused = decodeHeader(SESSION_FRAMING, new Uint8Array(5), DATA_CHUNK_BYTES_MAX);
  assert.equal(!refused.ok && refused.code, "EINVAL");
});
