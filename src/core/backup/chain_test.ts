import assert from "node:assert/strict";
import type { Manifest } from "./manifest.ts";
import { planRestore, planRestoreInChain } from "./chain.ts";
import { testDir, testFile, testId, testManifest } from "./_test_data.ts";

function known(...manifests: Manifest[]): Map<string, Manifest> {
  return new Map(manifests.map((m) => [m.id, m]));
}

Deno.test("planRestore() reads each file from the snapshot that holds its bytes", () => {
  const first = testManifest(1, [testDir("d"), testFile("d/a", 1), testFile("d/b", 1)]);
  const second = testManifest(2, [testDir("d"), testFile("d/a", 1), testFile("d/b", 2)], first.id);
  const result = planRestore(second, known(first, second));
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
  const result = planRestore(manifest, known(manifest), "a/b");
  assert.ok(result.ok);
  assert.deepEqual(result.plan.entries.map((e) => e.path), ["a", "a/b", "a/b/c"]);
});

Deno.test("planRestore() reports a missing path, a broken chain and a bad subpath", () => {
  const first = testManifest(1, [testFile("f", 1)]);
  const second = testManifest(2, [testFile("f", 1)], first.id);
  const missing = planRestore(second, known(second));
  assert.equal(missing.ok ? "ok" : missing.problem, "missing-snapshot");
  const notFound = planRestore(first, known(first), "nope");
  assert.equal(notFound.ok ? "ok" : notFound.problem, "path-not-found");
  const bad = planRestore(first, known(first), "../f");
  assert.equal(bad.ok ? "ok" : bad.problem, "bad-path");
  const foreign = testManifest(3, [testFile("f", 9)]);
  const unrelated = planRestore(foreign, known(foreign));
  assert.equal(unrelated.ok ? "ok" : unrelated.problem, "bad-chain");
});

Deno.test("planRestore() refuses a parent chain that loops", () => {
  const a = testManifest(1, [], testId(2));
  const b = testManifest(2, [], testId(1));
  const result = planRestore(a, known(a, b));
  assert.equal(result.ok ? "ok" : result.problem, "missing-snapshot");
});

Deno.test("planRestoreInChain() plans from the ancestry alone, as planRestore does from the manifests", () => {
  const first = testManifest(1, [testDir("d"), testFile("d/a", 1), testFile("d/b", 1)]);
  const second = testManifest(2, [testDir("d"), testFile("d/a", 1), testFile("d/b", 2)], first.id);
  const fromIds = planRestoreInChain(second, [second.id, first.id]);
  assert.deepEqual(fromIds, planRestore(second, known(first, second)));
});

Deno.test("planRestoreInChain() refuses a chain that is not the snapshot's, or loops, or misses a file's snapshot", () => {
  const first = testManifest(1, [testFile("f", 1)]);
  const second = testManifest(2, [testFile("f", 1)], first.id);
  for (
    const chain of [[first.id], [second.id], [second.id, testId(7)], [
      second.id,
      first.id,
      second.id,
    ]]
  ) {
    const result = planRestoreInChain(second, chain);
    assert.equal(result.ok ? "ok" : result.problem, "bad-chain", chain.join(","));
  }
  const orphan = testManifest(3, [testFile("f", 1)]);
  const result = planRestoreInChain(orphan, [orphan.id]);
  assert.equal(result.ok ? "ok" : result.problem, "bad-chain");
});
