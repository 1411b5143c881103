import assert from "node:assert/strict";
import fc from "fast-check";
import { checkEntryPath, isWithin, parentPath, pathFromBytes, pathToBytes } from "./path_rules.ts";

Deno.test("checkEntryPath() accepts spaces, unicode, leading dashes and newlines", () => {
  for (const path of ["a b", "résumé – ünï/日本.txt", "-rf", "line\nbreak", "a/.hidden", "..."]) {
    assert.deepEqual(checkEntryPath(path), { ok: true }, path);
  }
});

Deno.test("checkEntryPath() refuses paths that could escape or are malformed", () => {
  const cases: Array<[string, string]> = [
    ["", "empty"],
    ["/etc/passwd", "absolute"],
    ["../x", "dot-segment"],
    ["a/../../x", "dot-segment"],
    ["a/./b", "dot-segment"],
    ["a//b", "empty-segment"],
    ["a/", "empty-segment"],
    ["a\0b", "nul"],
    ["x".repeat(256), "too-long"],
    ["a/".repeat(2100) + "a", "too-long"],
  ];
  for (const [path, problem] of cases) {
    const check = checkEntryPath(path);
    assert.equal(check.ok, false, JSON.stringify(path));
    if (!check.ok) assert.equal(check.problem, problem, JSON.stringify(path));
  }
});

Deno.test("parentPath() and isWithin() split on slashes only", () => {
  assert.equal(parentPath("a b/c\nd"), "a b");
  assert.equal(parentPath("top"), "");
  assert.ok(isWithin("a/b", "a"));
  assert.ok(isWithin("a", "a"));
  assert.ok(!isWithin("ab", "a"));
});

Deno.test("pathFromBytes() decodes as strict UTF-8 would, and pathToBytes() gives the bytes back", () => {
  const strict = new TextDecoder("utf-8", { fatal: true });
  const asciiHeavy = fc.uint8Array({ maxLength: 300 }).map((bytes) => bytes.map((b) => b & 0x7f));
  fc.assert(
    fc.property(fc.oneof(asciiHeavy, fc.uint8Array({ maxLength: 300 })), (bytes) => {
      const name = pathFromBytes(bytes);
      assert.deepEqual(pathToBytes(name), bytes);
      let decoded: string | undefined;
      try {
        decoded = strict.decode(bytes);
      } catch {
        decoded = undefined;
      }
      if (decoded !== undefined) assert.equal(name, decoded);
    }),
    { numRuns: 2000 },
  );
  assert.equal(pathFromBytes(new Uint8Array([0x61, 0xff])), "a\udcff");
  assert.equal(pathFromBytes(new Uint8Array(300).fill(0x61)), "a".repeat(300));
});
