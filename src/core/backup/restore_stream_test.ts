import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeRecord, encodeRecord, piecePrefix, type RestoreRecord } from "./restore_stream.ts";

const index = fc.integer({ min: 0, max: 0xffff_ffff });
const size = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

const framed = fc.oneof(
  fc.record({ kind: fc.constant("head" as const), index, realSize: size }),
  fc.record({ kind: fc.constant("end" as const), index }),
  fc.record({
    kind: fc.constant("problem" as const),
    index,
    code: fc.string({ maxLength: 20 }),
    message: fc.string({ maxLength: 200 }),
  }),
  fc.constant({ kind: "archive-end" as const }),
);

Deno.test("every record decodes to what was encoded", () => {
  fc.assert(
    fc.property(framed, (record) => {
      const decoded = decodeRecord(encodeRecord(record));
      assert.ok(decoded.ok, JSON.stringify(record));
      assert.deepEqual(decoded.value, { ...record });
    }),
    { numRuns: 300 },
  );
});

Deno.test("a piece is its prefix and its bytes in one frame, decoded as a view of the frame", () => {
  fc.assert(
    fc.property(
      fc.option(size, { nil: null }),
      fc.uint8Array({ maxLength: 64 }),
      (position, bytes) => {
        const prefix = piecePrefix(position);
        const frame = new Uint8Array(prefix.length + bytes.length);
        frame.set(prefix);
        frame.set(bytes, prefix.length);
        const decoded = decodeRecord(frame);
        assert.ok(decoded.ok);
        const expected: RestoreRecord = position === null
          ? { kind: "hashed", bytes }
          : { kind: "piece", position, bytes };
        assert.deepEqual(decoded.value, expected);
        if ("bytes" in decoded.value) {
          assert.equal(decoded.value.bytes.buffer, frame.buffer);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("malformed records are EPROTO failures, never exceptions", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const decoded = decodeRecord(bytes);
      if (!decoded.ok) assert.equal(decoded.code, "EPROTO");
    }),
    { numRuns: 500 },
  );
  for (const bad of [[], [9], [1, 0, 0], [4, 0], [5, 0, 0, 0, 0, 123], [6, 0], [2, 0]]) {
    const decoded = decodeRecord(Uint8Array.from(bad));
    assert.ok(!decoded.ok, JSON.stringify(bad));
    assert.equal(decoded.code, "EPROTO");
  }
});

Deno.test("out-of-range indices, sizes and positions are refused when encoding", () => {
  assert.throws(() => encodeRecord({ kind: "end", index: -1 }), RangeError);
  assert.throws(() => encodeRecord({ kind: "head", index: 0, realSize: 2 ** 53 }), RangeError);
  assert.throws(() => piecePrefix(-5), RangeError);
});
