import assert from "node:assert/strict";
import { EntryTable } from "./entry_table.ts";
import type { SourceEntry } from "./plan.ts";
import { testId } from "./_test_data.ts";

const dir = (path: string): SourceEntry => ({ type: "dir", path, mode: 0o755, mtimeMs: 1 });
const file = (path: string): SourceEntry & { type: "file" } => ({
  type: "file",
  path,
  sizeBytes: 1,
  mode: 0o644,
  mtimeMs: 1,
  dev: 7,
  ino: 42,
});
const HASH = "0123456789abcdef".repeat(4);

Deno.test("EntryTable gives back each entry's whole path from its name and its directory", () => {
  const table = new EntryTable();
  const paths = ["a", "a/b", "a/b/c.txt", "a/b/d", "a/e", "z.txt"];
  for (const path of paths) {
    table.add(path.endsWith(".txt") || path === "a/e" ? file(path) : dir(path));
  }
  assert.deepEqual(paths.map((_, i) => table.path(i)), paths);
  assert.deepEqual(table.names, ["a", "b", "c.txt", "d", "e", "z.txt"]);
  assert.equal(table.dirIndex("a/b"), 1);
  assert.equal(table.dirIndex("a/e"), -1, "a file is not a directory");
  assert.deepEqual(table.source(2), { ...file("a/b/c.txt") });
});

Deno.test("EntryTable refuses an entry out of path order or below no directory", () => {
  const table = new EntryTable();
  table.add(dir("b"));
  assert.throws(() => table.add(dir("a")), /comes after/);
  assert.throws(() => table.add(file("c/x")), /its directory comes first/);
});

const STAT = { mode: 0o644, mtimeMs: 1, size: 1, uid: 0, gid: 0, dev: 7, ino: 42, nlink: 1 };

Deno.test("EntryTable.addChild builds the same table as add, from names and directory indexes", () => {
  const byPath = new EntryTable();
  const byChild = new EntryTable();
  const entries: Array<[string, number, string, SourceEntry["type"]]> = [
    ["a", -1, "a", "dir"],
    ["a/b", 0, "b", "dir"],
    ["a/b/c.txt", 1, "c.txt", "file"],
    ["a/b/l", 1, "l", "symlink"],
    ["a/e", 0, "e", "file"],
    ["z.txt", -1, "z.txt", "file"],
  ];
  for (const [path, parent, name, type] of entries) {
    const meta = { path, mode: 0o644, mtimeMs: 1, dev: 7, ino: 42, uid: 0, gid: 0 };
    if (type === "symlink") byPath.add({ type, ...meta, target: "t" });
    else if (type === "file") byPath.add({ type, ...meta, sizeBytes: 1 });
    else byPath.add({ type, ...meta });
    byChild.addChild(parent, name, type, STAT, type === "symlink" ? "t" : undefined);
  }
  for (let i = 0; i < entries.length; i++) assert.deepEqual(byChild.source(i), byPath.source(i));
  assert.equal(byChild.dirIndex("a/b"), 1);
  byChild.add(file("zz")); // add() after addChild() still checks against the last path
  assert.throws(() => byChild.add(file("y")), /comes after zz/);
});

Deno.test("EntryTable.addChild refuses a name out of order, a file as directory, a bad name", () => {
  const table = new EntryTable();
  table.addChild(-1, "b", "dir", STAT);
  table.addChild(-1, "b-c", "dir", STAT); // "b-c" sorts before "b/": path order, not depth first
  table.addChild(0, "f", "file", STAT);
  assert.throws(() => table.addChild(-1, "a", "file", STAT), /a comes after b\/f/);
  assert.throws(() => table.addChild(0, "e", "file", STAT), /e comes after f/);
  assert.throws(() => table.addChild(1, "x", "file", STAT), /b-c\/x comes after b\/f/);
  assert.throws(() => table.addChild(2, "x", "file", STAT), /is not a directory/);
  assert.throws(() => table.addChild(5, "x", "file", STAT), /is not a directory/);
  assert.throws(() => table.addChild(0, "g/h", "file", STAT), /entry name/);
  assert.throws(() => table.addChild(0, "g", "symlink", STAT), /symlink target/);
  table.addChild(0, "g", "file", STAT);
  assert.deepEqual([0, 1, 2, 3].map((i) => table.path(i)), ["b", "b-c", "b/f", "b/g"]);
});

Deno.test("EntryTable keeps data references to more than 65,535 snapshots apart", () => {
  const table = new EntryTable();
  const count = 70_000;
  for (let i = 0; i < count; i++) {
    const path = `f${String(i).padStart(6, "0")}`;
    table.add(file(path));
    table.setData(i, HASH, testId(i), i * 512);
  }
  for (const i of [0, 65_535, 65_536, count - 1]) {
    assert.equal(table.dataIds[table.data[i]!], testId(i), `entry ${i}`);
    assert.equal(table.offsets[i], i * 512);
    assert.equal(table.sha256(i), HASH);
  }
});

Deno.test("EntryTable keeps more than 65,535 distinct owner names apart", () => {
  const table = new EntryTable();
  const count = 70_000;
  for (let i = 0; i < count; i++) {
    table.add(file(`f${String(i).padStart(6, "0")}`));
    table.setOwnerNames(i, `user${i}`, i % 2 === 0 ? "staff" : undefined);
  }
  for (const i of [0, 1, 65_535, 65_536, count - 1]) {
    const group = i % 2 === 0 ? { group: "staff" } : {};
    assert.deepEqual(table.ownerNamesOf(i), { user: `user${i}`, ...group }, `entry ${i}`);
  }
  table.setOwnerNames(0, undefined, undefined);
  assert.deepEqual(table.ownerNamesOf(0), {});
});

Deno.test("EntryTable tells hard-linked files by their link count, however large", () => {
  const table = new EntryTable();
  table.add(file("a"), 1);
  table.add(file("b"), 2);
  table.add(file("c"), 70_000);
  assert.equal(table.linkKey(0), undefined);
  assert.equal(table.linkKey(1), "7:42");
  assert.equal(table.linkKey(2), "7:42");
});
