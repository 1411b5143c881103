import assert from "node:assert/strict";
import { checkEntryPath, isWithin, parentPath } from "./path_rules.ts";

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
