import assert from "node:assert/strict";
import {
  applyKeepRules,
  type KeepRules,
  keepRulesProblem,
  parseKeepDuration,
  type RetentionSnapshot,
} from "./retention.ts";

const at = (iso: string, source = "/data", kind: "fs" | "db" = "fs"): RetentionSnapshot => ({
  id: `id-${iso}-${source}-${kind}`,
  createdMs: Date.parse(iso),
  source,
  kind,
});

function decide(snapshots: RetentionSnapshot[], rules: KeepRules, timeZone = "UTC") {
  const groups = applyKeepRules(snapshots, rules, {
    nowMs: Date.parse("2030-01-01T00:00:00Z"),
    timeZone,
  });
  return groups.map((group) =>
    group.decisions.map((d) => [new Date(d.snapshot.createdMs).toISOString(), d.reasons])
  );
}

Deno.test("keep-daily keeps the newest snapshot of each day, newest days first", () => {
  const snapshots = [
    at("2024-05-01T10:00:00Z"),
    at("2024-05-01T20:00:00Z"),
    at("2024-05-02T08:00:00Z"),
    at("2024-05-03T09:00:00Z"),
    at("2024-05-03T23:00:00Z"),
  ];
  assert.deepEqual(decide(snapshots, { daily: 2 }), [[
    ["2024-05-03T23:00:00.000Z", ["daily 2024-05-03"]],
    ["2024-05-03T09:00:00.000Z", []],
    ["2024-05-02T08:00:00.000Z", ["daily 2024-05-02"]],
    ["2024-05-01T20:00:00.000Z", []],
    ["2024-05-01T10:00:00.000Z", []],
  ]]);
});

Deno.test("a snapshot kept by several rules lists every one of them", () => {
  const snapshots = [at("2024-05-01T10:00:00Z"), at("2024-06-02T10:00:00Z")];
  assert.deepEqual(decide(snapshots, { last: 1, daily: 1, monthly: 5 }), [[
    ["2024-06-02T10:00:00.000Z", ["last", "daily 2024-06-02", "monthly 2024-06"]],
    ["2024-05-01T10:00:00.000Z", ["monthly 2024-05"]],
  ]]);
});

Deno.test("while a rule has counts left the group's oldest snapshot is kept too (restic)", () => {
  const snapshots = [at("2024-05-01T10:00:00Z"), at("2024-05-01T12:00:00Z")];
  assert.deepEqual(decide(snapshots, { daily: 3 }), [[
    ["2024-05-01T12:00:00.000Z", ["daily 2024-05-01"]],
    ["2024-05-01T10:00:00.000Z", ["daily 2024-05-01 (oldest)"]],
  ]]);
});

Deno.test("days are counted in the given time zone", () => {
  // 23:30 UTC on May 1 and 00:30 UTC on May 2 are one day in New York, two in UTC.
  const snapshots = [at("2024-05-01T23:30:00Z"), at("2024-05-02T00:30:00Z")];
  assert.deepEqual(decide(snapshots, { daily: 1 }, "UTC")[0]!.map(([, r]) => r), [
    ["daily 2024-05-02"],
    [],
  ]);
  assert.deepEqual(decide(snapshots, { daily: 1 }, "America/New_York")[0]!.map(([, r]) => r), [
    ["daily 2024-05-01"],
    [],
  ]);
});

Deno.test("weeks are ISO weeks: 2024-12-30 is in week 1 of 2025", () => {
  const snapshots = [at("2024-12-29T12:00:00Z"), at("2024-12-30T12:00:00Z")];
  assert.deepEqual(decide(snapshots, { weekly: 2 })[0]!.map(([, r]) => r), [
    ["weekly 2025-W01"],
    ["weekly 2024-W52"],
  ]);
});

Deno.test("keep-within counts calendar months back from the group's newest snapshot, not from now", () => {
  const snapshots = [
    at("2024-01-30T12:00:00Z"),
    at("2024-01-31T12:00:01Z"),
    at("2024-03-31T12:00:00Z"),
  ];
  // 2024-03-31 minus 2 months is 2024-01-31 12:00: only snapshots after it are kept.
  assert.deepEqual(decide(snapshots, { within: "2m" })[0]!.map(([, r]) => r), [
    ["within 2m"],
    ["within 2m"],
    [],
  ]);
});

Deno.test("groups are decided apart, per source and kind", () => {
  const snapshots = [
    at("2024-05-01T10:00:00Z", "/a"),
    at("2024-05-02T10:00:00Z", "/a"),
    at("2024-05-03T10:00:00Z", "/b"),
    at("2024-05-04T10:00:00Z", "/a", "db"),
  ];
  const groups = applyKeepRules(snapshots, { last: 1 }, { nowMs: 0, timeZone: "UTC" });
  assert.deepEqual(
    groups.map((g) => [g.source, g.kind, g.decisions.map((d) => d.keep)]),
    [["/a", "db", [true]], ["/a", "fs", [true, false]], ["/b", "fs", [true]]],
  );
});

Deno.test("no keep rule keeps everything, as restic's empty policy does", () => {
  const snapshots = [at("2024-05-01T10:00:00Z"), at("2024-05-02T10:00:00Z")];
  assert.deepEqual(decide(snapshots, {})[0]!.map(([, r]) => r), [
    ["no keep rule given"],
    ["no keep rule given"],
  ]);
});

Deno.test("bad rules, durations and time zones are named, and applying them throws RangeError", () => {
  assert.match(keepRulesProblem({ daily: 1.5 }, "UTC")!, /keep-daily/);
  assert.match(keepRulesProblem({ last: -2 }, "UTC")!, /keep-last/);
  assert.match(keepRulesProblem({ within: "3w" }, "UTC")!, /keep-within/);
  assert.match(keepRulesProblem({ last: 1 }, "Mars/Olympus")!, /time zone/);
  assert.equal(keepRulesProblem({ last: -1, within: "1y2m3d4h" }, "Europe/Berlin"), undefined);
  assert.equal(typeof parseKeepDuration("1d1d"), "string");
  assert.equal(typeof parseKeepDuration("0d"), "string");
  assert.equal(typeof parseKeepDuration(""), "string");
  assert.deepEqual(parseKeepDuration("4h1y"), { years: 1, months: 0, days: 0, hours: 4 });
  assert.throws(
    () => applyKeepRules([], { daily: 0.5 }, { nowMs: 0, timeZone: "UTC" }),
    RangeError,
  );
});
