/**
 * The retention policy: which snapshots a set of keep rules keeps, and why. Pure: the time and
 * the time zone come in as arguments.
 *
 * The rules are restic's (`forget --keep-last/-hourly/-daily/-weekly/-monthly/-yearly/-within`),
 * applied to each group of snapshots of one source and kind on its own:
 *
 * - snapshots are taken newest first (by `createdMs`, then id);
 * - `last N` keeps the N newest;
 * - `hourly/daily/weekly/monthly/yearly N` keeps the newest snapshot of each of the N newest
 *   hours, days, ISO weeks, months or years that hold a snapshot; buckets are calendar periods
 *   in the given time zone (restic uses the local zone); while such a rule still has counts left
 *   when the group's oldest snapshot is reached, the oldest is kept too (restic 0.16's rule:
 *   the longest history the counts allow);
 * - `within D` keeps every snapshot made less than D (`1y2m3d4h`, calendar years, months and
 *   days in the zone, then hours) before the group's newest snapshot that is not in the future;
 * - a snapshot kept by several rules lists every one of them; a count of -1 means unlimited;
 * - no rule at all keeps everything (as restic does: an empty policy removes nothing).
 *
 * @module
 */

import { invariant } from "../assert.ts";

/** A count meaning "every period that holds a snapshot". */
export const KEEP_UNLIMITED = -1;
/** Largest count a rule may give. */
export const KEEP_COUNT_MAX = 1_000_000;
/** Most snapshots one policy run looks at. */
export const RETENTION_SNAPSHOTS_MAX = 100_000;

/** The keep rules; an absent or zero count is no rule. */
export interface KeepRules {
  /** Keep the N newest snapshots. */
  readonly last?: number;
  /** Keep the newest snapshot of each of the N newest hours holding one. */
  readonly hourly?: number;
  /** The same per day. */
  readonly daily?: number;
  /** The same per ISO week (weeks start on Monday). */
  readonly weekly?: number;
  /** The same per month. */
  readonly monthly?: number;
  /** The same per year. */
  readonly yearly?: number;
  /** Keep every snapshot made within this duration (`1y2m3d4h`) of the group's newest. */
  readonly within?: string;
}

/** The rules with a count, in the order they are applied and reported. */
export const COUNT_RULES = ["last", "hourly", "daily", "weekly", "monthly", "yearly"] as const;
/** One rule with a count. */
export type CountRule = typeof COUNT_RULES[number];

/** What the policy needs to know of a snapshot. */
export interface RetentionSnapshot {
  /** The snapshot id. */
  readonly id: string;
  /** When it was taken, ms since the epoch. */
  readonly createdMs: number;
  /** Its source (snapshots are grouped by source and kind). */
  readonly source: string;
  /** Its kind. */
  readonly kind: "fs" | "db";
}

/** The verdict on one snapshot. */
export interface KeepDecision {
  /** The snapshot. */
  readonly snapshot: RetentionSnapshot;
  /** Whether it is kept. */
  readonly keep: boolean;
  /** Every rule that keeps it, with the period (`daily 2024-05-03`); empty when removed. */
  readonly reasons: readonly string[];
}

/** The verdicts on one group (one source and kind), newest first. */
export interface RetentionGroup {
  /** The group's source. */
  readonly source: string;
  /** The group's kind. */
  readonly kind: "fs" | "db";
  /** One decision per snapshot, newest first. */
  readonly decisions: readonly KeepDecision[];
}

/** Time inputs of the policy. */
export interface RetentionClock {
  /** Now, ms since the epoch: snapshots after it are never the reference of `within`. */
  readonly nowMs: number;
  /** The IANA time zone the calendar periods are counted in (`UTC`, `Europe/Berlin`). */
  readonly timeZone: string;
}

/** A parsed `within` duration. */
export interface KeepDuration {
  /** Calendar years. */
  readonly years: number;
  /** Calendar months. */
  readonly months: number;
  /** Calendar days. */
  readonly days: number;
  /** Hours (of 3600 s). */
  readonly hours: number;
}

const DURATION_PART = /(\d{1,6})([ymdh])/y;
const UNIT_NAMES = { y: "years", m: "months", d: "days", h: "hours" } as const;

/**
 * Parses restic's duration syntax: numbers with the units `y`, `m`, `d`, `h` (each at most once,
 * in any order), not all zero.
 *
 * @param text the duration, for example `1y6m` or `7d12h`
 * @returns the duration, or a message saying what is wrong
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseKeepDuration } from "./retention.ts";
 * assert.deepEqual(parseKeepDuration("1y2d"), { years: 1, months: 0, days: 2, hours: 0 });
 * assert.equal(typeof parseKeepDuration("2w"), "string");
 * ```
 */
export function parseKeepDuration(text: string): KeepDuration | string {
  const parts = { years: 0, months: 0, days: 0, hours: 0 };
  const seen = new Set<string>();
  DURATION_PART.lastIndex = 0;
  // Bounded: each turn consumes at least two characters of `text`.
  while (DURATION_PART.lastIndex < text.length) {
    const match = DURATION_PART.exec(text);
    if (match === null) break;
    const unit = match[2] as keyof typeof UNIT_NAMES;
    if (seen.has(unit)) return `duration ${JSON.stringify(text)} gives "${unit}" twice`;
    seen.add(unit);
    parts[UNIT_NAMES[unit]] = Number(match[1]);
  }
  const whole = seen.size > 0 && DURATION_PART.lastIndex === text.length;
  if (!whole) {
    return `duration ${JSON.stringify(text)} is not like 1y2m3d4h (years, months, days, hours)`;
  }
  if (Object.values(parts).every((n) => n === 0)) {
    return `duration ${JSON.stringify(text)} is zero`;
  }
  return parts;
}

/**
 * What is wrong with a set of rules or a time zone, or undefined when they can be applied.
 *
 * @param rules the keep rules
 * @param timeZone the IANA time zone
 * @returns the first problem, naming the rule
 */
export function keepRulesProblem(rules: KeepRules, timeZone: string): string | undefined {
  for (const rule of COUNT_RULES) {
    const count = rules[rule];
    if (count === undefined) continue;
    if (!Number.isInteger(count) || count < KEEP_UNLIMITED || count > KEEP_COUNT_MAX) {
      return `keep-${rule} must be an integer from 0 to ${KEEP_COUNT_MAX}, or unlimited; got ${count}`;
    }
  }
  if (rules.within !== undefined) {
    const parsed = parseKeepDuration(rules.within);
    if (typeof parsed === "string") return `keep-within: ${parsed}`;
  }
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
  } catch {
    return `time zone ${
      JSON.stringify(timeZone)
    } is not an IANA time zone (like UTC or Europe/Berlin)`;
  }
  return undefined;
}

/**
 * True when the rules keep anything less than everything (some count or `within` given).
 *
 * @param rules the keep rules
 * @returns whether any rule is given
 */
export function hasKeepRule(rules: KeepRules): boolean {
  return rules.within !== undefined || COUNT_RULES.some((rule) => (rules[rule] ?? 0) !== 0);
}

/** Wall-clock fields of an instant in a zone. */
interface WallTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly ms: number;
}

/** Calendar arithmetic in one IANA time zone, through `Intl` (no I/O, no clock). */
class ZoneCalendar {
  readonly #format: Intl.DateTimeFormat;

  constructor(timeZone: string) {
    this.#format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  }

  wall(ms: number): WallTime {
    const fields: Record<string, number> = {};
    for (const part of this.#format.formatToParts(new Date(ms))) {
      if (part.type !== "literal") fields[part.type] = Number(part.value);
    }
    return {
      year: fields.year!,
      month: fields.month!,
      day: fields.day!,
      hour: fields.hour!,
      minute: fields.minute!,
      second: fields.second!,
      ms: ((ms % 1000) + 1000) % 1000,
    };
  }

  /** The zone's offset from UTC at `ms`, in ms. */
  #offsetMs(ms: number): number {
    const w = this.wall(ms);
    return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second, w.ms) - ms;
  }

  /** The instant whose wall time is `wallAsUtcMs` (wall fields read as if they were UTC). */
  instantOf(wallAsUtcMs: number): number {
    const guess = wallAsUtcMs - this.#offsetMs(wallAsUtcMs);
    return wallAsUtcMs - this.#offsetMs(guess);
  }
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** ISO-8601 week-numbering year and week of a calendar date. */
function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const dayMs = 86_400_000;
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = date + (3 - weekday) * dayMs;
  const weekYear = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / dayMs / 7);
  return { year: weekYear, week };
}

/** The period of a rule a wall time falls into, as a label (`2024-05-03`, `2024-W18`). */
function periodLabel(rule: Exclude<CountRule, "last">, w: WallTime): string {
  const date = `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}`;
  if (rule === "hourly") return `${date}T${pad(w.hour)}`;
  if (rule === "daily") return date;
  if (rule === "weekly") {
    const { year, week } = isoWeek(w.year, w.month, w.day);
    return `${pad(year, 4)}-W${pad(week)}`;
  }
  if (rule === "monthly") return `${pad(w.year, 4)}-${pad(w.month)}`;
  return pad(w.year, 4);
}

/** The instant `duration` before `latestMs` (calendar parts in the zone, then hours). */
function withinCutoff(calendar: ZoneCalendar, latestMs: number, duration: KeepDuration): number {
  const w = calendar.wall(latestMs);
  const shifted = Date.UTC(
    w.year - duration.years,
    w.month - 1 - duration.months,
    w.day - duration.days,
    w.hour,
    w.minute,
    w.second,
    w.ms,
  );
  return calendar.instantOf(shifted) - duration.hours * 3_600_000;
}

function newestFirst(a: RetentionSnapshot, b: RetentionSnapshot): number {
  if (a.createdMs !== b.createdMs) return b.createdMs - a.createdMs;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Decides one group (all of one source and kind), newest first. */
function decideGroup(
  snapshots: readonly RetentionSnapshot[],
  rules: KeepRules,
  clock: RetentionClock,
  calendar: ZoneCalendar,
): KeepDecision[] {
  const sorted = [...snapshots].sort(newestFirst);
  if (!hasKeepRule(rules)) {
    return sorted.map((snapshot) => ({ snapshot, keep: true, reasons: ["no keep rule given"] }));
  }
  const counts = new Map<CountRule, number>();
  for (const rule of COUNT_RULES) counts.set(rule, rules[rule] ?? 0);
  const lastPeriod = new Map<CountRule, string>();
  const duration = rules.within === undefined ? undefined : parseKeepDuration(rules.within);
  invariant(typeof duration !== "string", "rules were checked before they were applied");
  const past = sorted.filter((s) => s.createdMs <= clock.nowMs);
  const cutoff = duration === undefined || past.length === 0
    ? -Infinity
    : withinCutoff(calendar, past[0]!.createdMs, duration);
  return sorted.map((snapshot, index) => {
    const reasons: string[] = [];
    if (duration !== undefined && snapshot.createdMs > cutoff) {
      reasons.push(`within ${rules.within}`);
    }
    const wall = calendar.wall(snapshot.createdMs);
    const oldest = index === sorted.length - 1;
    for (const rule of COUNT_RULES) {
      const left = counts.get(rule)!;
      if (left === 0) continue;
      const period = rule === "last" ? `#${index}` : periodLabel(rule, wall);
      const fresh = period !== lastPeriod.get(rule);
      if (!fresh && !oldest) continue;
      lastPeriod.set(rule, period);
      if (left > 0) counts.set(rule, left - 1);
      const label = rule === "last" ? "last" : `${rule} ${period}`;
      reasons.push(fresh ? label : `${label} (oldest)`);
    }
    return { snapshot, keep: reasons.length > 0, reasons };
  });
}

/**
 * Applies keep rules to snapshots, each group of one source and kind on its own.
 *
 * @param snapshots the snapshots to decide on (at most {@link RETENTION_SNAPSHOTS_MAX})
 * @param rules the keep rules (checked with {@link keepRulesProblem} first)
 * @param clock now and the time zone the calendar periods are counted in
 * @returns one group per source and kind (sorted by source, then kind), decisions newest first
 * @throws {RangeError} when the rules or the time zone are invalid, or there are too many
 *   snapshots
 *
 * @example Keeping the last two snapshots of each source
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyKeepRules } from "./retention.ts";
 * const snapshot = (id: string, createdMs: number) =>
 *   ({ id, createdMs, source: "/data", kind: "fs" as const });
 * const [group] = applyKeepRules(
 *   [snapshot("a", 1), snapshot("b", 2), snapshot("c", 3)],
 *   { last: 2 },
 *   { nowMs: 10, timeZone: "UTC" },
 * );
 * assert.deepEqual(group!.decisions.map((d) => [d.snapshot.id, d.keep]), [
 *   ["c", true], ["b", true], ["a", false],
 * ]);
 * ```
 */
export function applyKeepRules(
  snapshots: readonly RetentionSnapshot[],
  rules: KeepRules,
  clock: RetentionClock,
): RetentionGroup[] {
  const problem = keepRulesProblem(rules, clock.timeZone);
  if (problem !== undefined) throw new RangeError(problem);
  if (snapshots.length > RETENTION_SNAPSHOTS_MAX) {
    throw new RangeError(`${snapshots.length} snapshots; at most ${RETENTION_SNAPSHOTS_MAX}`);
  }
  const groups = new Map<string, RetentionSnapshot[]>();
  for (const snapshot of snapshots) {
    const key = JSON.stringify([snapshot.source, snapshot.kind]);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [snapshot]);
    else group.push(snapshot);
  }
  const calendar = new ZoneCalendar(clock.timeZone);
  const result = [...groups.keys()].sort().map((key) => {
    const members = groups.get(key)!;
    const decisions = decideGroup(members, rules, clock, calendar);
    invariant(decisions.length === members.length, "one decision per snapshot");
    invariant(
      !hasKeepRule(rules) || decisions[0]!.keep,
      `the newest snapshot of ${key} is kept whenever a rule is given`,
    );
    return { source: members[0]!.source, kind: members[0]!.kind, decisions };
  });
  return result;
}
