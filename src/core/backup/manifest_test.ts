import assert from "node:assert/strict";
import { makeSnapshotId, parseManifest, SNAPSHOT_ID_PATTERN } from "./manifest.ts";
import { testDir, testFile, testManifest } from "./_test_data.ts";

Deno.test("parseManifest() accepts a valid manifest and survives a JSON round trip", () => {
  const manifest = testManifest(1, [testDir("d"), testFile("d/f", 1), {
    type: "symlink",
    path: "d/l",
    mode: 0o777,
    mtimeMs: 5,
    target: "../outside/is/fine/as/a/value",
  }]);
  const parsed = parseManifest(JSON.parse(JSON.stringify(manifest)));
  assert.deepEqual(parsed, { ok: true, manifest });
});

Deno.test("parseManifest() refuses escaping paths and names the entry", () => {
  const parsed = parseManifest(testManifest(1, [testFile("../evil", 1)]));
  assert.equal(parsed.ok, false);
  if (!parsed.ok) assert.match(parsed.message, /\.\.\/evil/);
});

Deno.test("parseManifest() refuses an entry below a symlink or without its parent", () => {
  const link = { type: "symlink" as const, path: "l", mode: 0o777, mtimeMs: 0, target: "/tmp" };
  const below = parseManifest(testManifest(1, [link, testFile("l/f", 1)]));
  assert.equal(below.ok, false);
  if (!below.ok) assert.match(below.message, /parent "l" is a symlink/);
  const orphan = parseManifest(testManifest(1, [testFile("x/f", 1)]));
  assert.equal(orphan.ok, false);
  if (!orphan.ok) assert.match(orphan.message, /parent "x" is not listed/);
});

Deno.test("parseManifest() refuses duplicates, bad hashes, other formats and junk", () => {
  assert.equal(parseManifest(testManifest(1, [testDir("a"), testDir("a")])).ok, false);
  const badHash = { ...testFile("f", 1), sha256: "xyz" };
  assert.equal(parseManifest(testManifest(1, [badHash])).ok, false);
  assert.equal(parseManifest({ ...testManifest(1, []), format: "restic" }).ok, false);
  assert.equal(parseManifest({ ...testManifest(1, []), version: 3 }).ok, false);
  for (const junk of [null, 3, "x", [], {}]) assert.equal(parseManifest(junk).ok, false);
});

Deno.test("makeSnapshotId() makes ids that match the pattern and sort by time", () => {
  const a = makeSnapshotId(1_700_000_000_000, "ffffffff");
  const b = makeSnapshotId(1_700_000_000_001, "00000000");
  assert.match(a, SNAPSHOT_ID_PATTERN);
  assert.ok(a < b);
  assert.throws(() => makeSnapshotId(1, "XYZ"), RangeError);
  assert.throws(() => makeSnapshotId(-1, "00000000"), RangeError);
});
