import assert from "node:assert/strict";
import { chainProblem, planRestore } from "./chain.ts";
import type { FileEntry } from "./manifest.ts";
import { testDir, testFile, testId, testManifest } from "./_test_data.ts";

Deno.test("planRestore() reads each file from the snapshot that holds its bytes", () => {
  const first = testManifest(1, [testDir("d"), testFile("d/a", 1), testFile("d/b", 1)]);
  const second = testManifest(2, [testDir("d"), testFile("d/a", 1), testFile("d/b", 2)], first.id);
  const result = planRestore(second);
  assert.ok(result.ok);
  assert.deepEqual(
    result.plan.archives.map((a) => [a.snapshot, [...a.files.keys()]]),
    [[testId(1), ["d/a"]], [testId(2), ["d/b"]]],
  );
});

Deno.test("planRestore() selects a subtree with the directories leading to it", () => {
  const manifest = testManifest(1, [
    testDir("a"),
    testDir("a/b"),
    testFile("a/b/c", 1),
    testFile("a/x", 1),
    testDir("ab"),
  ]);
  const result = planRestore(manifest, "a/b");
  assert.ok(result.ok);
  assert.deepEqual(result.plan.entries.map((e) => e.path), ["a", "a/b", "a/b/c"]);
});

Deno.test("planRestore() reports a missing path and a bad subpath", () => {
  const first = testManifest(1, [testFile("f", 1)]);
  const notFound = planRestore(first, "nope");
  assert.equal(notFound.ok ? "ok" : notFound.problem, "path-not-found");
  const bad = planRestore(first, "../f");
  assert.equal(bad.ok ? "ok" : bad.problem, "bad-path");
});

Deno.test("planRestore() follows data references, not the parent chain (a forgotten parent is no loss)", () => {
  // The parent (1) was forgotten; its archive, or the one prune repacked it into (9), remains.
  const second = testManifest(2, [testFile("f", 9), testFile("g", 2)], testId(1));
  const result = planRestore(second);
  assert.ok(result.ok);
  assert.deepEqual(
    result.plan.archives.map((a) => [a.snapshot, [...a.files.keys()]]),
    [[testId(2), ["g"]], [testId(9), ["f"]]],
  );
});

const state = (sizeBytes: number | null, recordedBytes: number | null) => ({
  sizeBytes,
  recordedBytes,
});

Deno.test("chainProblem() checks recorded sizes, and member ends where no manifest records one", () => {
  const parent = testManifest(2, [
    { ...testFile("f", 1, 600), offset: 1024 } as FileEntry,
    { ...testFile("g", 2), offset: 0 } as FileEntry,
  ]);
  const own = state(1024, 1024);
  assert.equal(
    chainProblem(parent, new Map([[testId(1), state(2560, null)], [testId(2), own]])),
    undefined,
  );
  assert.match(
    chainProblem(parent, new Map([[testId(1), state(2000, null)], [testId(2), own]]))!,
    /snapshot 20240101T000000000Z-00000001 has 2000 bytes; its members need at least 2136/,
  );
  assert.match(
    chainProblem(parent, new Map([[testId(1), state(2560, null)], [testId(2), state(512, 1024)]]))!,
    /has 512 bytes; its manifest records 1024/,
  );
  assert.match(chainProblem(parent, new Map([[testId(2), own]]))!, /00000001 is missing/);
});
