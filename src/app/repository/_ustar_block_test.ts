import assert from "node:assert/strict";
import fc from "fast-check";
import tar from "tar-stream";
import { type UstarFields, writeUstarBlock } from "./_ustar_block.ts";

/** tar-stream's own block for `fields` (what `HeaderEncoder` wrote before this writer). */
function tarStreamBlocks(fields: UstarFields): Uint8Array[] {
  const out: Uint8Array[] = [];
  const pack = tar.pack() as unknown as {
    push(chunk: Uint8Array | null): boolean;
    _encode(header: UstarFields): void;
  };
  pack.push = (chunk) => {
    if (chunk !== null) out.push(new Uint8Array(chunk));
    return true;
  };
  pack._encode(fields);
  return out;
}

const ascii = (maxLength: number) =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map(String.fromCharCode), maxLength });
const anyText = (maxLength: number) => fc.oneof(ascii(maxLength), fc.string({ maxLength }));
/** Mostly `plain` (what the writer takes), sometimes `wide` (what it must leave alone). */
const mostly = <T>(plain: fc.Arbitrary<T>, wide: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: plain, weight: 9 }, { arbitrary: wide, weight: 1 });
const type = fc.constantFrom("file", "link", "symlink", "directory", "fifo", "pax-header", "odd");

const fieldsArbitrary: fc.Arbitrary<UstarFields> = fc.record({
  name: mostly(ascii(100), anyText(160)),
  type,
  mode: mostly(fc.integer({ min: 0, max: 0o7777 }), fc.integer({ min: 0, max: 0o177777 })),
  uid: mostly(fc.integer({ min: 0, max: 0o777777 }), fc.integer({ min: 0, max: 2 ** 31 })),
  gid: mostly(fc.integer({ min: 0, max: 0o777777 }), fc.integer({ min: 0, max: 2 ** 31 })),
  size: mostly(fc.nat(1 << 20), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  mtime: mostly(fc.integer({ min: 0, max: 2e12 }), fc.integer({ min: -1e12, max: 4e12 }))
    .map((ms) => new Date(ms)),
  linkname: fc.option(mostly(ascii(100), anyText(120)), { nil: undefined }),
  uname: fc.option(ascii(31), { nil: undefined }),
  gname: fc.option(ascii(31), { nil: undefined }),
});

Deno.test("a ustar block written in place is byte for byte tar-stream's, whenever it is written", () => {
  let written = 0;
  fc.assert(
    fc.property(fieldsArbitrary, (fields) => {
      const block = new Uint8Array(512).fill(0xee); // stale bytes of a reused room
      if (!writeUstarBlock(fields, block)) return;
      written++;
      assert.deepEqual([block], tarStreamBlocks(fields));
    }),
    { numRuns: 2000 },
  );
  assert.ok(written > 500, `only ${written} of 2000 headers took the in-place writer`);
});

Deno.test("a member the plain block cannot hold is left to tar-stream, and nothing is written", () => {
  const base: UstarFields = {
    name: "a",
    type: "file",
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 1,
    mtime: new Date(0),
  };
  const cases: Array<Partial<UstarFields>> = [
    { name: "x".repeat(101) },
    { name: "ä" },
    { linkname: "é" },
    { size: 0o77777777777 + 1 },
    { mtime: new Date(-2000) },
    { mtime: new Date(2 ** 31 * 1000) },
    { uid: 0o777777 + 1 },
    { type: "unknown-type" },
  ];
  for (const change of cases) {
    const block = new Uint8Array(512).fill(7);
    assert.equal(writeUstarBlock({ ...base, ...change }, block), false, JSON.stringify(change));
    assert.ok(block.every((byte) => byte === 7));
  }
});
