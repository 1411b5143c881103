/**
 * Properties of a retention policy (keep rules applied per source and kind): the newest
 * snapshot of a group is always kept when a rule is given, deciding again on what was kept
 * keeps it all, `last N` keeps exactly the N newest, `daily N` keeps the newest of each of the N
 * newest days (and the oldest while counts are left), groups do not affect each other, and a
 * fixed time zone is the same as shifting the clock. The policy under test is an argument, so
 * the suite imports nothing from a runtime.
 *
 * @module
 */

import fc from "fast-check";
import { defineProperty, type Suite } from "./_suite.ts";
import type {
  KeepRules,
  RetentionClock,
  RetentionGroup,
  RetentionSnapshot,
} from "../src/core/backup/retention.ts";

/** The policy under test: `applyKeepRules` or another implementation of the same rules. */
export type KeepPolicy = (
  snapshots: readonly RetentionSnapshot[],
  rules: KeepRules,
  clock: RetentionClock,
) => RetentionGroup[];

const HOUR_MS = 3_600_000;
const BASE_MS = Date.UTC(2023, 11, 20);
const NOW_MS = Date.UTC(2025, 0, 1);

/** Snapshots of a few sources and kinds, clustered so that hours, days and weeks repeat. */
function snapshotsArbitrary(): fc.Arbitrary<RetentionSnapshot[]> {
  const snapshot = fc.record({
    source: fc.constantFrom("/a", "/b"),
    kind: fc.constantFrom("fs" as const, "db" as const),
    hour: fc.oneof(
      { arbitrary: fc.integer({ min: 0, max: 72 }), weight: 4 },
      { arbitrary: fc.integer({ min: 0, max: 24 * 70 }), weight: 1 },
      { arbitrary: fc.integer({ min: 0, max: 24 * 800 }), weight: 1 },
    ),
    minute: fc.integer({ min: 0, max: 59 }),
  });
  return fc.array(snapshot, { maxLength: 40 }).map((items) =>
    items.map((item, index) => ({
      id: `s${String(index).padStart(3, "0")}`,
      createdMs: BASE_MS + item.hour * HOUR_MS + item.minute * 60_000,
      source: item.source,
      kind: item.kind,
    }))
  );
}

function countArbitrary(): fc.Arbitrary<number | undefined> {
  const count = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(-1));
  return fc.option(count, { nil: undefined, freq: 2 });
}

/** Random keep rules, sometimes none at all. */
function rulesArbitrary(): fc.Arbitrary<KeepRules> {
  return fc.record({
    last: countArbitrary(),
    hourly: countArbitrary(),
    daily: countArbitrary(),
    weekly: countArbitrary(),
    monthly: countArbitrary(),
    yearly: countArbitrary(),
    within: fc.option(withinArbitrary(), { nil: undefined, freq: 2 }),
  }, { requiredKeys: [] });
}

function withinArbitrary(): fc.Arbitrary<string> {
  return fc.constantFrom("1d", "12h", "1m", "2d6h", "1y");
}

/** One rule alone, so that no other rule hides what it decides. */
function singleRuleArbitrary(): fc.Arbitrary<KeepRules> {
  return fc.oneof(
    withinArbitrary().map((within) => ({ within })),
    fc.tuple(
      fc.constantFrom("last", "hourly", "daily", "weekly", "monthly", "yearly"),
      fc.integer({ min: 1, max: 6 }),
    ).map(([rule, count]) => ({ [rule]: count })),
  );
}

function hasRule(rules: KeepRules): boolean {
  return rules.within !== undefined ||
    [rules.last, rules.hourly, rules.daily, rules.weekly, rules.monthly, rules.yearly]
      .some((count) => (count ?? 0) !== 0);
}

const UTC: RetentionClock = { nowMs: NOW_MS, timeZone: "UTC" };

function keptIds(groups: readonly RetentionGroup[]): string[] {
  return groups.flatMap((g) => g.decisions.filter((d) => d.keep).map((d) => d.snapshot.id))
    .sort();
}

function fail(message: string, details: unknown): never {
  throw new Error(`${message}: ${JSON.stringify(details)}`);
}

/** One property over random snapshots and rules: throws when it does not hold. */
type Check = (policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) => void;

function decidedOnce(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  const decisions = policy(snapshots, rules, UTC).flatMap((g) => g.decisions);
  const ids = decisions.map((d) => d.snapshot.id).sort();
  if (JSON.stringify(ids) !== JSON.stringify(snapshots.map((s) => s.id).sort())) {
    fail("decided ids differ from the snapshots", ids);
  }
  const bad = decisions.filter((d) => d.keep !== (d.reasons.length > 0));
  if (bad.length > 0) fail("keep and reasons disagree", bad);
}

function newestKept(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  if (!hasRule(rules)) return;
  for (const group of policy(snapshots, rules, UTC)) {
    const newest = Math.max(...group.decisions.map((d) => d.snapshot.createdMs));
    const kept = group.decisions.some((d) => d.keep && d.snapshot.createdMs === newest);
    if (!kept) fail("the newest snapshot was removed", group);
  }
}

function idempotent(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  const kept = new Set(keptIds(policy(snapshots, rules, UTC)));
  const again = policy(snapshots.filter((s) => kept.has(s.id)), rules, UTC);
  const removed = again.flatMap((g) => g.decisions).filter((d) => !d.keep);
  if (removed.length > 0) fail("a second run removes more", removed);
}

function lastExact(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  const n = rules.last === undefined || rules.last === 0 ? 2 : rules.last;
  for (const group of policy(snapshots, { last: n }, UTC)) {
    const expected = n === -1 ? group.decisions.length : Math.min(n, group.decisions.length);
    const order = [...group.decisions].sort((a, b) => b.snapshot.createdMs - a.snapshot.createdMs);
    const keptCount = group.decisions.filter((d) => d.keep).length;
    const newestKept = order.slice(0, expected).every((d) => d.keep);
    if (keptCount !== expected || !newestKept) fail(`keep-last ${n}`, group);
  }
}

/** The model of `daily N`: the newest of each of the N newest days, the oldest while N > days. */
function dailyModel(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  const n = Math.max(rules.daily ?? 3, 1);
  for (const group of policy(snapshots, { daily: n }, UTC)) {
    const byAge = group.decisions.map((d) => d.snapshot).sort((a, b) =>
      b.createdMs - a.createdMs || (a.id < b.id ? 1 : -1)
    );
    const day = (s: RetentionSnapshot) => new Date(s.createdMs).toISOString().slice(0, 10);
    const newestOfDay = new Map<string, string>();
    for (const s of byAge) if (!newestOfDay.has(day(s))) newestOfDay.set(day(s), s.id);
    const expected = new Set([...newestOfDay.values()].slice(0, n));
    if (newestOfDay.size < n) expected.add(byAge[byAge.length - 1]!.id);
    const kept = group.decisions.filter((d) => d.keep).map((d) => d.snapshot.id);
    if (kept.length !== expected.size || kept.some((id) => !expected.has(id))) {
      fail(`keep-daily ${n}: expected ${JSON.stringify([...expected])}`, group);
    }
  }
}

function groupsApart(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  for (const group of policy(snapshots, rules, UTC)) {
    const alone = policy(
      snapshots.filter((s) => s.source === group.source && s.kind === group.kind),
      rules,
      UTC,
    );
    if (JSON.stringify(alone) !== JSON.stringify([group])) fail("groups interfere", group);
  }
}

function zoneIsOffset(policy: KeepPolicy, snapshots: RetentionSnapshot[], rules: KeepRules) {
  const shift = 2 * HOUR_MS;
  const zoned = policy(snapshots, rules, { nowMs: NOW_MS, timeZone: "Etc/GMT-2" });
  const shifted = policy(
    snapshots.map((s) => ({ ...s, createdMs: s.createdMs + shift })),
    rules,
    { nowMs: NOW_MS + shift, timeZone: "UTC" },
  );
  if (JSON.stringify(keptIds(zoned)) !== JSON.stringify(keptIds(shifted))) {
    fail("the zone is not an offset", { zoned: keptIds(zoned), shifted: keptIds(shifted) });
  }
}

const CHECKS: ReadonlyArray<readonly [string, Check]> = [
  ["every snapshot is decided once; kept ones give a reason, removed ones none", decidedOnce],
  ["whenever a rule is given, the newest snapshot of each group is kept", newestKept],
  ["forget is idempotent: deciding again on the kept snapshots keeps them all", idempotent],
  ["keep-last N alone keeps exactly the min(N, count) newest snapshots of each group", lastExact],
  [
    "keep-daily N alone keeps the newest of each of the N newest days, and the oldest while counts are left",
    dailyModel,
  ],
  ["a group's decisions do not depend on the other groups", groupsApart],
];

/**
 * The retention suite.
 *
 * @param policy the policy under test
 * @returns the suite
 */
export function retentionSuite(policy: KeepPolicy): Suite {
  const properties = CHECKS.map(([name, check]) =>
    defineProperty(
      name,
      { numRuns: 200 },
      () => fc.property(snapshotsArbitrary(), rulesArbitrary(), (s, r) => void check(policy, s, r)),
    )
  );
  // One rule at a time, so that no other rule hides an error in counting periods in a zone.
  const zone = defineProperty(
    "counting in a fixed zone (UTC+2) is counting in UTC with the clock shifted by two hours",
    { numRuns: 600 },
    () =>
      fc.property(
        snapshotsArbitrary(),
        singleRuleArbitrary(),
        (s, r) => void zoneIsOffset(policy, s, r),
      ),
  );
  return { name: "retention", properties: [...properties, zone] };
}
