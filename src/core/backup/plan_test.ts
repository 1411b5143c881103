import assert from "node:assert/strict";
import { parseManifest } from "./manifest.ts";
import {
  buildManifest,
  entryLines,
  ParentMerge,
  planSnapshot,
  recordPacked,
  type SourceEntry,
} from "./plan.ts";
import { EntryTable } from "./entry_table.ts";
import { testId } from "./_test_data.ts";
import type { Manifest, ManifestEntry } from "./manifest.ts";

const file = (path: string, sizeBytes: number, mtimeMs = 1000, mode = 0o644): SourceEntry => ({
  type: "file",
  path,
  sizeBytes,
  mtimeMs,
  mode,
});
const dir = (path: string): SourceEntry => ({ type: "dir", path, mode: 0o755, mtimeMs: 1 });

function snapshot(
  n: number,
  entries: SourceEntry[],
  parent: Manifest | null,
) {
  const plan = planSnapshot(entries, parent);
  const packed = new Map(
    plan.changed.filter((e) => e.type === "file").map((e) => [e.path, {
      sha256: "a".repeat(64),
      sizeBytes: e.type === "file" ? e.sizeBytes : 0,
    }]),
  );
  return buildManifest(plan, {
    id: testId(n),
    kind: "fs",
    source: "/src",
    parent,
    createdMs: n,
    archiveBytes: 0,
    channelBytes: { storage: 0, network: 0 },
    packed,
  });
}

Deno.test("planSnapshot() without a parent marks every entry changed", () => {
  const plan = planSnapshot([dir("d"), file("d/a", 3)]);
  assert.deepEqual(plan.changed.map((e) => e.path), ["d", "d/a"]);
  assert.deepEqual(plan.unchanged, []);
  assert.deepEqual(plan.deleted, []);
});

Deno.test("planSnapshot() detects changes in size, mtime, mode, type and symlink target", () => {
  const link = (target: string): SourceEntry => ({
    type: "symlink",
    path: "l",
    target,
    mode: 0o777,
    mtimeMs: 1,
  });
  const first = snapshot(1, [
    file("same", 1),
    file("size", 1),
    file("time", 1),
    file("mode", 1),
    file("kind", 1),
    link("a"),
  ], null);
  const plan = planSnapshot([
    file("same", 1),
    file("size", 2),
    file("time", 1, 2000),
    file("mode", 1, 1000, 0o600),
    dir("kind"),
    link("b"),
    file("new", 0),
  ], first);
  // In path order (the manifest's and the archive's).
  assert.deepEqual(plan.changed.map((e) => e.path), ["kind", "l", "mode", "new", "size", "time"]);
  assert.deepEqual(plan.unchanged.map((e) => e.path), ["same"]);
});

Deno.test("planSnapshot() detects a change of owner ids, and ignores them when the parent has none", () => {
  const owned = (path: string, uid?: number, gid?: number): SourceEntry => ({
    ...file(path, 1),
    ...(uid === undefined ? {} : { uid, gid }),
  });
  const first = snapshot(1, [
    owned("gid", 1, 1),
    owned("none", undefined),
    owned("same", 1, 1),
    owned("uid", 1, 1),
    owned("unknown", 1, 1),
  ], null);
  const plan = planSnapshot([
    owned("gid", 1, 2),
    owned("none", 5, 5),
    owned("same", 1, 1),
    owned("uid", 2, 1),
    owned("unknown", undefined),
  ], first);
  assert.deepEqual(plan.changed.map((e) => e.path), ["gid", "uid", "unknown"]);
  assert.deepEqual(plan.unchanged.map((e) => e.path), ["none", "same"]);
});

Deno.test("buildManifest() keeps unchanged data in the parent and lists deletions", () => {
  const first = snapshot(1, [dir("d"), file("d/keep", 5), file("d/gone", 5)], null);
  const second = snapshot(2, [dir("d"), file("d/keep", 5), file("d/new", 7)], first);
  assert.equal(second.parent, first.id);
  assert.deepEqual(second.deleted, ["d/gone"]);
  const data = Object.fromEntries(
    second.entries.flatMap((e) => e.type === "file" ? [[e.path, e.data]] : []),
  );
  assert.deepEqual(data, { "d/keep": testId(1), "d/new": testId(2) });
  assert.ok(parseManifest(second).ok);
});

Deno.test("buildManifest() leaves out changed files that were skipped while packing", () => {
  const plan = planSnapshot([file("a", 1), file("b", 1)]);
  const manifest = buildManifest(plan, {
    id: testId(3),
    kind: "fs",
    source: "/src",
    parent: null,
    createdMs: 0,
    archiveBytes: 0,
    channelBytes: { storage: 0, network: 0 },
    packed: new Map([["a", { sha256: "b".repeat(64), sizeBytes: 1 }]]),
  });
  assert.deepEqual(manifest.entries.map((e) => e.path), ["a"]);
});

Deno.test("an unchanged tree plans nothing to archive", () => {
  const entries = [dir("d"), file("d/a", 1), file("d/b", 2)];
  const first = snapshot(1, entries, null);
  const plan = planSnapshot(entries, first);
  assert.equal(plan.changed.length, 0);
  assert.equal(plan.unchanged.length, 3);
});

Deno.test("a name left alone when its hard link's primary is deleted is archived again, so the manifest stays valid", () => {
  const linked = (path: string): SourceEntry => ({ ...file(path, 5), linkKey: "1:7" });
  const plan1 = planSnapshot([linked("a"), linked("b")]);
  const first = buildManifest(plan1, {
    id: testId(1),
    kind: "fs",
    source: "/src",
    parent: null,
    createdMs: 1,
    archiveBytes: 0,
    channelBytes: { storage: 0, network: 0 },
    packed: new Map([
      ["a", { sha256: "a".repeat(64), sizeBytes: 5, offset: 0 }],
      ["b", { sha256: "a".repeat(64), sizeBytes: 5, offset: 1024, hardlink: "a" }],
    ]),
  });
  // "a" is deleted: "b" now has one name (no link key) and is otherwise unchanged.
  const plan = planSnapshot([file("b", 5)], first);
  assert.deepEqual(plan.changed.map((e) => e.path), ["b"]);
  const second = snapshot(2, [file("b", 5)], first);
  assert.ok(parseManifest(second).ok, JSON.stringify(second.entries));
});

Deno.test("ParentMerge refuses a parent out of path order and lists what is gone", () => {
  const table = new EntryTable();
  table.add(dir("a"));
  table.add(file("a/x", 1));
  const merge = new ParentMerge(table);
  const parent = snapshot(1, [dir("a"), file("a/x", 1), file("b", 1)], null);
  assert.ok(merge.next(parent.entries[0]!));
  assert.ok(merge.next(parent.entries[2]!));
  assert.ok(!merge.next(parent.entries[1]!), "a/x after b is out of order");
  assert.deepEqual(merge.finish(), ["b"]);
});

Deno.test("a hard-linked file stays unchanged only with all its names, linked the same way", () => {
  const linked = (path: string): SourceEntry => ({ ...file(path, 1), linkKey: "k" });
  const first = snapshot(1, [linked("a"), linked("b")], null);
  assert.equal(first.entries[1]!.type === "file" && first.entries[1]!.hardlink, undefined);
  const again = planSnapshot([linked("a"), linked("b")], {
    ...first,
    entries: [first.entries[0]!, { ...first.entries[1]!, hardlink: "a" } as ManifestEntry],
  });
  assert.deepEqual(again.unchanged.map((e) => e.path), ["a", "b"]);
  const touched = planSnapshot([linked("a"), { ...linked("b"), mtimeMs: 5 }], first);
  assert.deepEqual(touched.changed.map((e) => e.path), ["a", "b"]);
  // A name that was a link in the parent, whose other names are gone, is archived again.
  const alone = planSnapshot([file("b", 1)], {
    ...first,
    entries: [{ ...first.entries[1]!, hardlink: "a" } as ManifestEntry],
  });
  assert.deepEqual(alone.changed.map((e) => e.path), ["b"]);
});

Deno.test("entryLines names the longest runs of unchanged entries whose lines are the parent's, and plain lines elsewhere", () => {
  const entries = [dir("d"), file("d/a", 1), file("d/b", 2), file("d/c", 3), file("d/e", 4)];
  const parent = snapshot(1, [...entries.slice(0, 4), file("d/dd", 9), file("d/e", 4)], null);
  const parentLines = parent.entries.map((entry) => JSON.stringify(entry));
  // d/b changed (size), d/dd is gone; the table's own line of d/c is written another way.
  const table = new EntryTable();
  for (const entry of [entries[0]!, entries[1]!, file("d/b", 5), entries[3]!, entries[4]!]) {
    table.add(entry);
  }
  const merge = new ParentMerge(table);
  parent.entries.forEach((entry, i) => {
    const line = entry.path === "d/c" ? ` ${parentLines[i]}` : parentLines[i];
    assert.ok(merge.next(entry, line));
  });
  assert.deepEqual(merge.finish(), ["d/dd"]);
  recordPacked(table, 2, { sha256: "b".repeat(64), sizeBytes: 5, offset: 0 }, testId(2));
  const parentLineOf = (i: number) => merge.parentLineOf(i);
  assert.deepEqual([0, 1, 2, 3, 4].map(parentLineOf), [0, 1, -1, -1, 5]);
  const runs = [...entryLines(table, testId(2), undefined, parentLineOf)];
  const plain = [...entryLines(table, testId(2), undefined)];
  assert.equal(plain.length, 5);
  assert.deepEqual(runs, ["[0,2]", plain[2], plain[3], "[5,1]"]);
  assert.deepEqual(plain.slice(0, 2), parentLines.slice(0, 2));
});
