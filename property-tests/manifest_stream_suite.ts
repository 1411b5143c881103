/**
 * Properties of manifests read and written a line at a time (`manifest_stream.ts`):
 *
 * - `checkEntry` gives zod's verdict (`entrySchema`) on valid entries and on every kind of
 *   broken one (wrong types, unknown keys, missing fields, bad paths, out-of-range numbers,
 *   odd extended attributes): the hand-written check is only a faster copy of the schema;
 * - `checkEntryPath`'s one-pass rules match the plain reading of the rules (encode, split,
 *   compare);
 * - a manifest written in the file layout parses (with `JSON.parse`) to the manifest itself,
 *   and the line reader yields its head, entries and deleted paths in order;
 * - `ManifestChecker` (with its second pass for hard links) accepts exactly the path-ordered
 *   manifests `parseManifest` accepts.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import {
  entrySchema,
  type Manifest,
  type ManifestEntry,
  parseManifest,
} from "../src/core/backup/manifest.ts";
import {
  checkEntry,
  checkRunLine,
  DELETED_SEPARATOR_LINE,
  endLine,
  headLine,
  ManifestChecker,
  ManifestLineReader,
  resolveLink,
  unresolvedLinkProblem,
} from "../src/core/backup/manifest_stream.ts";
import { checkEntryPath, pathToBytes } from "../src/core/backup/path_rules.ts";
import {
  entryLines,
  ParentMerge,
  recordPacked,
  type SourceEntry,
} from "../src/core/backup/plan.ts";
import { EntryTable, STATE, TYPE_CODES } from "../src/core/backup/entry_table.ts";

const ID = "20240101T000000000Z-0000000a";
const segment = fc.oneof(
  fc.constantFrom("a", "b", "a-b", "a.b", "ä", "\udcff", ".", "..", "", "x\0y", "é✓"),
  fc.string({ minLength: 1, maxLength: 8 }),
  fc.string({ minLength: 250, maxLength: 260, unit: fc.constantFrom("x", "é") }),
);
const pathArb = fc.oneof(
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join("/")),
  fc.constantFrom("/abs", "", "a//b", "a/"),
);
/** Numbers on and just past every bound a field has. */
const numberArb = fc.oneof(
  fc.integer({ min: -2, max: 0o10000 }),
  fc.constantFrom(-1, 0.5, 0o7777, 0o10000, 0xffff_ffff, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, Infinity, NaN, "1"),
);
const base64Arb = fc.oneof(fc.base64String({ maxLength: 40 }), fc.constantFrom("!!", "a=b", ""));
const xattrsArb = fc.dictionary(
  fc.oneof(fc.constantFrom("user.a", "", "x\0", "user.\udcfe"), fc.string({ maxLength: 6 })),
  base64Arb,
  { maxKeys: 3 },
);

/** Valid values of each field, and wrong ones. */
const FIELD_VALUES: Record<string, { good: fc.Arbitrary<unknown>; bad: fc.Arbitrary<unknown> }> = {
  path: { good: fc.constantFrom("a", "a/b", "é/\udcff"), bad: pathArb },
  mode: { good: fc.integer({ min: 0, max: 0o7777 }), bad: numberArb },
  mtimeMs: {
    good: fc.double({ noNaN: true, noDefaultInfinity: true }),
    bad: fc.constantFrom("1", null),
  },
  uid: { good: fc.integer({ min: 0, max: 0xffff_ffff }), bad: numberArb },
  gid: { good: fc.nat(), bad: fc.constantFrom(-1, 0.5, "0") },
  user: {
    good: fc.constantFrom("root", "x".repeat(255)),
    bad: fc.constantFrom("", "a:b", "x".repeat(256), "a\n"),
  },
  group: { good: fc.constant("wheel"), bad: fc.constant("a\0") },
  rawPath: { good: fc.base64String({ maxLength: 40 }), bad: base64Arb },
  sizeBytes: { good: fc.nat(), bad: numberArb },
  sha256: { good: fc.constant("0".repeat(64)), bad: fc.constantFrom("A".repeat(64), "0", 5) },
  data: { good: fc.constant(ID), bad: fc.constantFrom("nope", ID + "x") },
  offset: { good: fc.nat(), bad: numberArb },
  hardlink: { good: fc.constantFrom("h", "h/i"), bad: pathArb },
  sparse: {
    good: fc.record({ storedBytes: fc.nat() }),
    bad: fc.constantFrom({ storedBytes: 1, x: 1 }, { storedBytes: -1 }, {}, [1], null),
  },
  target: { good: fc.constantFrom("t", "../../x"), bad: fc.constantFrom("", "a\0", 3) },
  rawTarget: { good: fc.constant("AAAA"), bad: fc.constantFrom("!!", 4) },
  xattrs: { good: fc.constantFrom({}, { "user.a": "AAAA", "user.b": "" }), bad: xattrsArb },
};
const KEYS_OF: Record<string, readonly string[]> = {
  file: [
    "path",
    "mode",
    "mtimeMs",
    "uid",
    "gid",
    "user",
    "group",
    "rawPath",
    "sizeBytes",
    "sha256",
    "data",
    "offset",
    "hardlink",
    "sparse",
    "xattrs",
  ],
  dir: ["path", "mode", "mtimeMs", "uid", "gid", "user", "group", "rawPath", "xattrs"],
  symlink: [
    "path",
    "mode",
    "mtimeMs",
    "uid",
    "gid",
    "user",
    "group",
    "rawPath",
    "target",
    "rawTarget",
  ],
};
const REQUIRED_OF: Record<string, readonly string[]> = {
  file: ["path", "mode", "mtimeMs", "sizeBytes", "sha256", "data"],
  dir: ["path", "mode", "mtimeMs"],
  symlink: ["path", "mode", "mtimeMs", "target"],
};

/** A valid entry of a random type with some optional fields, then at most one thing broken. */
const entryArb: fc.Arbitrary<unknown> = fc.constantFrom("file", "dir", "symlink").chain((type) => {
  const keys = KEYS_OF[type]!;
  const fields = Object.fromEntries(keys.map((k) => [k, FIELD_VALUES[k]!.good]));
  const optional = keys.filter((k) => !REQUIRED_OF[type]!.includes(k));
  return fc.tuple(
    fc.record(fields, { requiredKeys: [...REQUIRED_OF[type]!] }),
    fc.oneof(
      { weight: 2, arbitrary: fc.constant({ kind: "none" as const }) },
      fc.record({ kind: fc.constant("bad" as const), key: fc.constantFrom(...keys) }),
      fc.record({
        kind: fc.constant("drop" as const),
        key: fc.constantFrom(...REQUIRED_OF[type]!),
      }),
      fc.record({
        kind: fc.constant("add" as const),
        key: fc.constantFrom("extra", ...optional, "target", "sizeBytes", "xattrs"),
      }),
      fc.record({
        kind: fc.constant("type" as const),
        key: fc.constantFrom("fifo", "file", "dir", "symlink"),
      }),
      fc.constant({ kind: "junk" as const }),
    ),
  ).chain(([entry, mutation]): fc.Arbitrary<unknown> => {
    const value: Record<string, unknown> = { type, ...entry };
    if (mutation.kind === "none") return fc.constant(value);
    if (mutation.kind === "junk") return fc.constantFrom(null, [], "x", 1);
    if (mutation.kind === "drop") {
      delete value[mutation.key];
      return fc.constant(value);
    }
    if (mutation.kind === "type") return fc.constant({ ...value, type: mutation.key });
    const arbitrary = FIELD_VALUES[mutation.key]?.[mutation.kind === "bad" ? "bad" : "good"] ??
      fc.constant(1);
    return arbitrary.map((field) => ({ ...value, [mutation.key]: field }));
  });
});

/** The plain reading of the path rules: encode, split, compare. */
function referencePathOk(path: string): boolean {
  if (path.length === 0 || path.startsWith("/") || path.includes("\0")) return false;
  if (pathToBytes(path).length > 4096) return false;
  return path.split("/").every((s) =>
    s.length > 0 && s !== "." && s !== ".." && pathToBytes(s).length <= 255
  );
}

/** A random path-ordered tree: directories, files (some hard links), symlinks. */
const treeArb = fc.array(
  fc.record({
    parent: fc.nat(),
    name: fc.constantFrom("a", "b", "a-b", "a.b", "z", "é", "\udcff"),
    kind: fc.constantFrom("dir", "dir", "file", "symlink", "link"),
    link: fc.nat(),
  }),
  { maxLength: 24 },
).map((specs) => {
  const dirs = [""];
  const files: string[] = [];
  const entries = new Map<string, ManifestEntry>();
  for (const spec of specs) {
    const parent = dirs[spec.parent % dirs.length]!;
    const path = parent === "" ? spec.name : `${parent}/${spec.name}`;
    if (entries.has(path)) continue;
    const base = { path, mode: 0o644, mtimeMs: 1 };
    if (spec.kind === "dir") {
      dirs.push(path);
      entries.set(path, { type: "dir", ...base });
    } else if (spec.kind === "symlink") {
      entries.set(path, { type: "symlink", ...base, target: "x" });
    } else {
      const hardlink = spec.kind === "link" && files.length > 0
        ? files[spec.link % files.length]
        : undefined;
      entries.set(path, {
        type: "file",
        ...base,
        sizeBytes: 1,
        sha256: "0".repeat(64),
        data: ID,
        ...(hardlink === undefined ? {} : { hardlink }),
      });
      if (hardlink === undefined) files.push(path);
    }
  }
  return [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
});

const NEXT_ID = "20240101T000000001Z-0000000b";

/** The walk's view of a parent entry, its mtime moved when `touched`. */
function sourceOf(entry: ManifestEntry, touched: boolean): SourceEntry {
  const meta = { path: entry.path, mode: entry.mode, mtimeMs: entry.mtimeMs + (touched ? 1 : 0) };
  if (entry.type === "file") return { type: "file", ...meta, sizeBytes: entry.sizeBytes };
  if (entry.type === "symlink") return { type: "symlink", ...meta, target: entry.target };
  return { type: "dir", ...meta };
}

/**
 * The entry lines of an incremental planned against `parent` (its non-directories in `gone`
 * left out of the walk, its entries in `touched` changed, every changed file packed): plain,
 * and with run lines expanded against the parent's lines.
 */
function plainAndExpanded(parent: ManifestEntry[], gone: Set<number>, touched: Set<number>) {
  const parentLines = parent.map((entry) => JSON.stringify(entry));
  const table = new EntryTable();
  parent.forEach((entry, i) => {
    if (!gone.has(i) || entry.type === "dir") table.add(sourceOf(entry, touched.has(i)));
  });
  const merge = new ParentMerge(table);
  parent.forEach((entry, i) => assert.ok(merge.next(entry, parentLines[i])));
  merge.finish();
  for (let i = 0; i < table.count; i++) {
    if (table.states[i] !== STATE.changed || table.types[i] !== TYPE_CODES.file) continue;
    recordPacked(table, i, { sha256: "1".repeat(64), sizeBytes: table.sizes[i]! }, NEXT_ID);
  }
  const plain = [...entryLines(table, NEXT_ID, undefined)];
  const runs = [...entryLines(table, NEXT_ID, undefined, (i) => merge.parentLineOf(i))];
  const expanded = runs.flatMap((line) => {
    if (!line.startsWith("[")) return [line];
    const run = checkRunLine(JSON.parse(line));
    if (!run.ok) throw new Error(`entryLines made a bad run line ${line}`);
    return parentLines.slice(run.value.from, run.value.from + run.value.count);
  });
  return { plain, runs, expanded };
}

/** Breaks a sorted tree the ways a crafted manifest could. */
const brokenTreeArb = fc.tuple(
  treeArb,
  fc.constantFrom("none", "duplicate", "swap", "orphan", "below-symlink", "bad-link"),
  fc.nat(),
).map(([entries, how, at]) => {
  const list = [...entries];
  const i = list.length === 0 ? 0 : at % list.length;
  if (how === "duplicate" && list.length > 0) list.splice(i, 0, list[i]!);
  if (how === "swap" && list.length > 1) {
    const j = (i + 1) % list.length;
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  if (how === "orphan") list.push({ type: "dir", path: "zz/orphan", mode: 0o755, mtimeMs: 0 });
  const link = list.find((e) => e.type === "symlink");
  if (how === "below-symlink" && link !== undefined) {
    list.push({ type: "dir", path: `${link.path}/x`, mode: 0o755, mtimeMs: 0 });
    list.sort((a, b) => (a.path < b.path ? -1 : 1));
  }
  const dir = list.find((e) => e.type === "dir");
  if (how === "bad-link" && dir !== undefined) {
    list.push({
      type: "file",
      path: "zzz",
      mode: 0o644,
      mtimeMs: 0,
      sizeBytes: 0,
      sha256: "0".repeat(64),
      data: ID,
      hardlink: dir.path,
    });
  }
  return list;
});

function manifestOf(entries: ManifestEntry[], deleted: string[] = []): Manifest {
  return {
    format: "lanfree-manifest",
    version: 2,
    id: ID,
    kind: "fs",
    source: "/src",
    parent: null,
    createdMs: 5,
    archiveBytes: 1024,
    channelBytes: { storage: 7, network: 3 },
    entries,
    deleted,
  };
}

/** The streaming verdict: the checker over the entries, then the hard-link pass. */
function streamVerdict(entries: readonly ManifestEntry[]): boolean {
  const checker = new ManifestChecker();
  for (const entry of entries) if (!checker.entry(entry).ok) return false;
  const targets = new Set(checker.unresolvedLinks());
  for (const entry of entries) resolveLink(targets, entry);
  return unresolvedLinkProblem(targets) === undefined;
}

/**
 * The manifest-stream properties.
 *
 * @returns the suite
 */
export function manifestStreamSuite(): Suite {
  return {
    name: "manifest stream",
    properties: [
      defineProperty(
        "checkEntry gives entrySchema's verdict",
        { numRuns: 2000 },
        () =>
          fc.property(entryArb, (value) => {
            const zod = entrySchema.safeParse(value).success;
            const fast = checkEntry(value).ok;
            if (zod !== fast) throw new Error(`zod says ${zod}, checkEntry says ${fast}`);
          }),
      ),
      defineProperty(
        "checkEntryPath matches the plain reading of the rules",
        { numRuns: 2000 },
        () =>
          fc.property(pathArb, (path) => {
            if (checkEntryPath(path).ok !== referencePathOk(path)) {
              throw new Error(`checkEntryPath(${JSON.stringify(path)}) disagrees`);
            }
          }),
      ),
      defineProperty(
        "the file layout is the manifest, and reads back line by line",
        {
          numRuns: 200,
        },
        () =>
          fc.property(
            treeArb,
            fc.array(fc.constantFrom("gone", 'x/"q"', "\udcfe"), { maxLength: 3 }),
            (entries, deleted) => {
              const manifest = manifestOf(entries, deleted);
              const lines = [
                headLine(manifest),
                ...entries.map((e, i) => JSON.stringify(e) + (i < entries.length - 1 ? "," : "")),
                DELETED_SEPARATOR_LINE,
                ...deleted.map((d, i) => JSON.stringify(d) + (i < deleted.length - 1 ? "," : "")),
                endLine(manifest.channelBytes),
              ];
              const whole = JSON.parse(lines.join("\n"));
              assert.deepEqual(whole, manifest);
              const reader = new ManifestLineReader();
              const items = lines.map((line) => reader.next(line));
              if (items.some((item) => item === undefined) || !reader.done) {
                throw new Error("the reader refused its own layout");
              }
              const read = items.filter((i) => i!.kind === "entry").map((i) =>
                JSON.parse((i as { line: string }).line)
              );
              assert.deepEqual(read, entries);
            },
          ),
      ),
      defineProperty(
        "run lines expand, against the parent's lines, to exactly the plain lines",
        { numRuns: 300 },
        () =>
          fc.property(
            treeArb,
            fc.array(fc.nat(), { maxLength: 6 }),
            fc.array(fc.nat(), { maxLength: 6 }),
            (parent, gone, touched) => {
              const at = (picks: number[]) =>
                new Set(picks.map((n) => n % Math.max(1, parent.length)));
              const { plain, runs, expanded } = plainAndExpanded(parent, at(gone), at(touched));
              assert.deepEqual(expanded, plain);
              // Where every line is the parent's (no hard link: this walk has no link keys; no
              // raw path: the generator leaves out `rawPath`), the manifest is one run.
              const same = plain.length > 0 &&
                plain.every((line, i) => line === JSON.stringify(parent[i]));
              if (same && plain.length === parent.length) {
                assert.deepEqual(runs, [`[0,${parent.length}]`], "no change is one run");
              }
            },
          ),
      ),
      defineProperty(
        "ManifestChecker accepts exactly the ordered manifests parseManifest accepts",
        {
          numRuns: 500,
        },
        () =>
          fc.property(brokenTreeArb, (entries) => {
            const sorted = entries.every((e, i) => i === 0 || entries[i - 1]!.path < e.path);
            const whole = parseManifest(manifestOf(entries)).ok && sorted;
            const stream = streamVerdict(entries);
            if (whole !== stream) {
              throw new Error(`parseManifest+order says ${whole}, stream ${stream}`);
            }
          }),
      ),
    ],
  };
}
