/**
 * What the retention commands share on the command line: the `--keep-*` options (forget, and
 * backup's automatic retention) parsed into keep rules, and the report lines of forget, prune and
 * consolidate.
 *
 * @module
 */

import {
  COUNT_RULES,
  KEEP_UNLIMITED,
  type KeepRules,
  keepRulesProblem,
} from "../core/backup/retention.ts";
import type { ConsolidateReport } from "./repository/consolidate.ts";
import type { ForgetReport } from "./repository/forget.ts";
import type { PruneReport } from "./repository/prune.ts";

/** The `--keep-*` options, for `parseArgs`. */
export const KEEP_OPTIONS = {
  "keep-last": { type: "string" },
  "keep-hourly": { type: "string" },
  "keep-daily": { type: "string" },
  "keep-weekly": { type: "string" },
  "keep-monthly": { type: "string" },
  "keep-yearly": { type: "string" },
  "keep-within": { type: "string" },
  "time-zone": { type: "string" },
} as const;

/** The usage lines of the `--keep-*` options. */
export const KEEP_USAGE = `  --keep-last N         keep the N newest snapshots
  --keep-hourly N       keep the newest snapshot of each of the N newest hours that have one
  --keep-daily N        ... of each of the N newest days
  --keep-weekly N       ... of each of the N newest ISO weeks (Monday to Sunday)
  --keep-monthly N      ... of each of the N newest months
  --keep-yearly N       ... of each of the N newest years
                        (N may be "unlimited"; while a rule has counts left, the oldest
                        snapshot is kept too, as restic does)
  --keep-within D       keep every snapshot made within D (like 1y6m, 7d, 12h; years,
                        months, days, hours) of the newest one
  --time-zone ZONE      count hours, days, weeks, months and years in ZONE (an IANA name such
                        as UTC or Europe/Berlin); default: this machine's zone, as restic`;

/** A command-line mistake in the keep options. */
export class KeepUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeepUsageError";
  }
}

function count(option: string, text: string): number {
  if (text === "unlimited") return KEEP_UNLIMITED;
  if (!/^\d{1,7}$/.test(text)) {
    throw new KeepUsageError(`--${option} must be a count or "unlimited", got "${text}"`);
  }
  return Number(text);
}

/**
 * The keep rules and time zone given by `--keep-*` options (checked).
 *
 * @param values the parsed option values
 * @param defaultZone the zone when `--time-zone` is absent
 * @returns the rules and the zone
 * @throws {KeepUsageError} naming the option
 */
export function keepRulesOf(
  values: Partial<Record<keyof typeof KEEP_OPTIONS, string>>,
  defaultZone: string,
): { rules: KeepRules; timeZone: string } {
  const rules: Record<string, number | string> = {};
  for (const rule of COUNT_RULES) {
    const text = values[`keep-${rule}`];
    if (text !== undefined) rules[rule] = count(`keep-${rule}`, text);
  }
  if (values["keep-within"] !== undefined) rules.within = values["keep-within"];
  const timeZone = values["time-zone"] ?? defaultZone;
  const problem = keepRulesProblem(rules as KeepRules, timeZone);
  if (problem !== undefined) throw new KeepUsageError(problem);
  return { rules: rules as KeepRules, timeZone };
}

/** Bytes in decimal units, as the backup summary prints them. */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]];
  const [unit, size] = units.find(([, n]) => bytes >= n) ?? ["B", 1];
  return `${size === 1 ? bytes : (bytes / size).toFixed(1)} ${unit}`;
}

/**
 * The lines of a forget report: per group what is kept (with the rules) and removed.
 *
 * @param report what forget decided
 * @returns the lines
 */
export function forgetLines(report: ForgetReport): string[] {
  const lines: string[] = [];
  for (const group of report.groups) {
    const kept = group.decisions.filter((d) => d.keep).length;
    lines.push(
      `source ${group.source} (${group.kind}): keep ${kept} of ${group.decisions.length} snapshots`,
    );
    for (const decision of group.decisions) {
      const verdict = decision.keep ? "keep  " : "remove";
      const reasons = decision.reasons.join(", ");
      lines.push(`  ${verdict}  ${decision.snapshot.id}${reasons === "" ? "" : `  ${reasons}`}`);
    }
  }
  const what = report.dryRun ? "would remove" : "removed";
  lines.push(
    `${what} ${report.removed.length} snapshots (periods counted in ${report.timeZone})` +
      (report.removed.length > 0 && !report.dryRun
        ? "; their archives stay until prune removes what nothing references"
        : ""),
  );
  return lines;
}

/**
 * The lines of a prune report: each archive removed or repacked, and the bytes.
 *
 * @param report what prune did
 * @returns the lines
 */
export function pruneLines(report: PruneReport): string[] {
  const counts = { keep: 0, repack: 0, remove: 0 };
  const lines: string[] = [];
  for (const archive of report.archives) {
    counts[archive.action]++;
    if (archive.action === "remove") lines.push(`  remove  ${archive.id}  (${archive.reason})`);
    if (archive.action === "repack" && archive.into !== undefined) {
      const into = archive.into.id === undefined ? "a new archive" : archive.into.id;
      lines.push(
        `  repack  ${archive.id} -> ${into}  (${archive.reason}; ${archive.into.members} members, ` +
          `${formatBytes(archive.sizeBytes)} -> ${formatBytes(archive.into.sizeBytes)})`,
      );
    }
  }
  const freed = report.bytesBefore - report.bytesAfter;
  return [
    `${report.dryRun ? "would prune" : "pruned"}: ${report.archives.length} archives of ` +
    `${report.snapshots} kept snapshots: keep ${counts.keep}, repack ${counts.repack}, ` +
    `remove ${counts.remove}`,
    ...lines,
    `  manifests rewritten: ${report.manifestsRewritten.length}`,
    `  archive bytes: ${formatBytes(report.bytesBefore)} before, ${
      formatBytes(report.bytesAfter)
    } ` +
    `after (${formatBytes(freed)} freed)`,
  ];
}

/**
 * The lines of a consolidate report.
 *
 * @param report what consolidate did
 * @returns the lines
 */
export function consolidateLines(report: ConsolidateReport): string[] {
  if (report.alreadyFull) {
    return [`snapshot ${report.snapshot} already stands alone (a full snapshot): nothing to do`];
  }
  return [
    `snapshot ${report.snapshot} now stands alone (it was incremental to ${report.formerParent})`,
    `  copied ${report.membersCopied} file members from ${report.readFrom.length} archives ` +
    `and ${report.headersWritten} directory and symlink headers`,
    `  archive ${formatBytes(report.archiveBytesBefore)} -> ${
      formatBytes(report.archiveBytesAfter)
    }`,
  ];
}

/**
 * The local IANA time zone (restic counts calendar periods in local time too), `UTC` when the
 * runtime names none.
 *
 * @returns the zone's name
 */
export function localTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
}
