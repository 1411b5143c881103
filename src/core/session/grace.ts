/**
 * The grace timers of a job, as rows with their rules: how long a side waits for its peer's
 * account of a failure before it settles for its own. The app reads the waits from here
 * (`JobSessions.tell`, `runBackupServer`, the job's hosts), and {@link graceRuleViolations}
 * states how the rows must relate, so a change that breaks the ordering fails a test.
 *
 * @module
 */

/** One grace timer. */
export interface GraceRow {
  /** How long it waits, ms. */
  readonly waitMs: number;
  /** Who waits. */
  readonly who: string;
  /** When the wait starts. */
  readonly startsWhen: string;
  /** What happens during and after it. */
  readonly rule: string;
}

/** The grace timers, by name. */
export const GRACE_ROWS = {
  tellWait: {
    waitMs: 1_000,
    who: "either side (JobSessions.tell)",
    startsWhen: "the side stops (its own failure, or a cancel) and tells its peer why",
    rule: "each `failed` report (on the control and the error channel of every session) goes " +
      "out within waitMs or is dropped; then every wait is failed and the descriptors closed",
  },
  clientReportWait: {
    waitMs: 1_000,
    who: "the backup server (runBackupServer)",
    startsWhen: "its side of the backup failed, after it aborted the snapshot",
    rule: "waits up to waitMs on the error channel for the client's own `failed` report " +
      "(which may trail the broken data channel that made the server fail); if it comes, the " +
      "server's failure is the client's (PeerFailedError), else the server's own",
  },
  errorGrace: {
    waitMs: 2_000,
    who: "the job over both sides' hosts (job_hosts)",
    startsWhen: "one side reported a failure and the other has not ended",
    rule: "waits up to waitMs for the other side's account, then fails the job with the best " +
      "reason of those in; both sides ended ends the wait at once",
  },
} as const satisfies Record<string, GraceRow>;

/**
 * The rules between the rows, checked: each returns a sentence when broken.
 *
 * - A side's `failed` report goes out within `tellWait`, and the server waits
 *   `clientReportWait` for it: `tellWait <= clientReportWait`, or the server gives up on a
 *   report that is still allowed to be on its way.
 * - The job waits `errorGrace` for the other side's account, which may be the server's after its
 *   own `clientReportWait`: `clientReportWait < errorGrace`, or the job settles for a worse reason
 *   while the better one is still coming.
 *
 * @param rows the rows (default {@link GRACE_ROWS})
 * @returns the broken rules (empty when all hold)
 */
export function graceRuleViolations(
  rows: Record<keyof typeof GRACE_ROWS, GraceRow> = GRACE_ROWS,
): string[] {
  const broken: string[] = [];
  if (rows.tellWait.waitMs > rows.clientReportWait.waitMs) {
    broken.push(
      `tellWait (${rows.tellWait.waitMs} ms) must not exceed clientReportWait ` +
        `(${rows.clientReportWait.waitMs} ms): the server would stop listening for a report ` +
        `still allowed on its way`,
    );
  }
  if (rows.clientReportWait.waitMs >= rows.errorGrace.waitMs) {
    broken.push(
      `clientReportWait (${rows.clientReportWait.waitMs} ms) must be below errorGrace ` +
        `(${rows.errorGrace.waitMs} ms): the job would settle before the server's account`,
    );
  }
  for (const [name, row] of Object.entries(rows)) {
    if (!Number.isInteger(row.waitMs) || row.waitMs <= 0) {
      broken.push(`${name} must wait a positive whole number of ms, not ${row.waitMs}`);
    }
  }
  return broken;
}
