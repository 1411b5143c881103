/**
 * The backup server's side of a session as a pure machine with one table: each row is a state,
 * the event it takes there, the state it goes to and the rule it follows. Time is an input: every
 * event carries `atMs`, and the `tick` rows send a keepalive (on every channel) `keepaliveMs` after
 * the last one and fail the session when the client has been silent for `peerSilentMs`. The
 * failure row aborts the snapshot and waits the `clientReportWait` grace row (`grace.ts`) for the
 * client's own report before it sends `failed`.
 *
 * Today's protocol (`src/core/backup/protocol.ts`): `hello` -> open the snapshot -> `begin` and,
 * when there is a parent, its line stream (credited by the client's `more`), preceded by the
 * offer to take run lines when the parent's file can be copied from -> archive bytes on
 * the data channel with `progress` and the manifest's line stream, in any order -> once the data
 * ended AND the manifest's lines are written: commit -> `committed`. The machine never commits
 * before both; past the commit point a failure to tell the client changes nothing.
 *
 * Once `committing`, the commit decides: a broken channel or a silent client no longer fails the
 * session (the snapshot may already stand); only the commit's own `commit-failed` does.
 *
 * Its pump is `runBackupServer` (`src/app/server/backup_server.ts`): it feeds these events in
 * and carries the actions out, and decides none of these steps itself.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import type { SessionTimes } from "./session_clock.ts";
import { SessionMachine } from "./session_machine.ts";
import { GRACE_ROWS } from "./grace.ts";
import { type SessionRow, sessionTableMarkdown } from "./table_markdown.ts";

/** The states of a backup server. */
export type BackupServerState =
  | "awaiting-hello"
  | "opening"
  | "transfer"
  | "committing"
  | "done"
  | "failing"
  | "failed";

/** A control message as the machine sees it (already parsed by the pump's schema). */
export type BackupServerMessage =
  | { readonly type: "hello" }
  | { readonly type: "progress" }
  | { readonly type: "more"; readonly of: "parent" | "manifest"; readonly upTo: number }
  | {
    readonly type: "part";
    readonly of: "parent" | "manifest" | "members";
    readonly last: boolean;
  }
  | { readonly type: string };

/** What the pump tells the machine; `atMs` is the pump's clock when it happened. */
export type BackupServerEvent =
  | { readonly type: "message"; readonly atMs: number; readonly message: BackupServerMessage }
  /** Any frame from the client (data or keepalive): it is alive. */
  | { readonly type: "heard"; readonly atMs: number }
  | {
    readonly type: "opened";
    readonly atMs: number;
    readonly snapshotId: string;
    readonly hasParent: boolean;
    /** The parent's manifest file has the line layout: run lines can be copied from it. */
    readonly parentHasLines?: boolean;
  }
  | { readonly type: "parent-sent"; readonly atMs: number }
  | { readonly type: "data-end"; readonly atMs: number }
  /** Every manifest line was written to the snapshot's manifest file and synced. */
  | { readonly type: "manifest-written"; readonly atMs: number }
  | { readonly type: "committed"; readonly atMs: number; readonly snapshotId: string }
  /** The commit itself failed (the snapshot does not stand). */
  | { readonly type: "commit-failed"; readonly atMs: number; readonly reason: string }
  | { readonly type: "tick"; readonly atMs: number }
  | { readonly type: "failure"; readonly atMs: number; readonly reason: string }
  | { readonly type: "client-report"; readonly atMs: number; readonly reason: string | undefined };

/** What the machine asks the pump to do, in order. */
export type BackupServerAction =
  | { readonly type: "open" }
  | { readonly type: "send-begin"; readonly snapshotId: string; readonly hasParent: boolean }
  /** Tell the client run lines are taken (`RUN_LINES_OFFER`), before the parent's lines. */
  | { readonly type: "offer-run-lines" }
  | { readonly type: "stream-parent" }
  /**
   * Start taking the archive's bytes (data channel) and the manifest's lines; `runLines`: its
   * run lines are copied from the parent's file (offered), else any run line is refused.
   */
  | { readonly type: "receive"; readonly runLines: boolean }
  | { readonly type: "grant-parent"; readonly upTo: number }
  | { readonly type: "take-manifest-part" }
  /**
   * The client's last control message came (the manifest's last part): stop reading the control
   * channel, whatever follows on it belongs to whoever uses the channel next (the job).
   */
  | { readonly type: "stop-reading" }
  | { readonly type: "report-progress" }
  | { readonly type: "commit" }
  | { readonly type: "send-committed"; readonly snapshotId: string }
  | { readonly type: "send-keepalive" }
  | { readonly type: "abort" }
  | { readonly type: "await-client-report"; readonly waitMs: number }
  | { readonly type: "send-failed"; readonly reason: string }
  | { readonly type: "done"; readonly snapshotId: string }
  | { readonly type: "failed"; readonly reason: string; readonly clientReason: string | undefined };

/** One row of the table. */
export type BackupServerRow = SessionRow<BackupServerState, BackupServerEvent["type"]>;

const LIVE: readonly BackupServerState[] = ["awaiting-hello", "opening", "transfer", "committing"];

/** The table: any (state, event) not in it is a protocol failure (the failure row). */
export const BACKUP_SERVER_ROWS: readonly BackupServerRow[] = [
  { state: "awaiting-hello", on: "message", next: "opening", rule: "a `hello`: open the snapshot" },
  {
    state: "opening",
    on: "opened",
    next: "transfer",
    rule: "send `begin`; with a parent, offer to take run lines if its file has the line " +
      "layout, and stream its lines within the client's credit; take the archive's bytes and " +
      "the manifest's lines (run lines only if offered)",
  },
  {
    state: "transfer",
    on: "message",
    next: "transfer",
    rule: "`progress` is reported; `more` of parent grants credit; a manifest `part` is " +
      "taken (after the last one, control is no longer read)",
  },
  { state: "transfer", on: "parent-sent", next: "transfer", rule: "the parent's stream ended" },
  {
    state: "transfer",
    on: "data-end",
    next: "transfer",
    rule: "commit once the manifest is written too",
  },
  {
    state: "transfer",
    on: "manifest-written",
    next: "transfer",
    rule: "commit once the data ended too (never before both)",
  },
  {
    state: "committing",
    on: "committed",
    next: "done",
    rule: "the commit point: send `committed` (best effort: the snapshot stands)",
  },
  {
    state: "committing",
    on: "commit-failed",
    next: "failing",
    rule: "abort; wait clientReportWait for the client's report",
  },
  {
    state: "committing",
    on: "parent-sent",
    next: "committing",
    rule: "the parent stream's end, posted late (the client used it all already)",
  },
  {
    state: "failing",
    on: "tick",
    next: "failing",
    rule: "keepaliveMs since the last keepalive: send one (the client waits for `failed`)",
  },
  {
    state: "committing",
    on: "failure",
    next: "committing",
    rule: "the commit decides: a broken channel changes nothing now",
  },
  {
    state: "failing",
    on: "client-report",
    next: "failed",
    rule: "send `failed`; the client's reason, if it came, is the cause",
  },
  ...LIVE.flatMap((state): BackupServerRow[] => [
    {
      state,
      on: "tick",
      next: state,
      rule: state === "committing"
        ? "keepaliveMs since the last keepalive: send one (the commit decides, not silence)"
        : "keepaliveMs since the last keepalive: send one; client silent for peerSilentMs: fail",
    },
    { state, on: "heard", next: state, rule: "the client is alive" },
  ]),
];

/** The rule every live state shares. */
export const BACKUP_SERVER_FAILURE_RULE =
  "in any live state but committing, a failure (or an event no row takes) aborts the snapshot and waits " +
  `clientReportWait (${GRACE_ROWS.clientReportWait.waitMs} ms) for the client's report`;

/** The machine's time rules. */
export type BackupServerTimes = SessionTimes;

/** The backup server machine. */
export class BackupServerMachine
  extends SessionMachine<BackupServerState, BackupServerEvent, BackupServerAction> {
  #snapshotId: string | undefined;
  #dataEnded = false;
  #manifestWritten = false;

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   */
  constructor(times: BackupServerTimes, startMs: number) {
    super(times, startMs, "awaiting-hello", BACKUP_SERVER_ROWS);
  }

  protected override beforeRows(event: BackupServerEvent): BackupServerAction[] | undefined {
    // Once committing, the commit decides: a broken channel changes nothing (its row).
    if (event.type === "failure" && this.current !== "committing") return this.fail(event.reason);
    return undefined;
  }

  protected override noRow(event: BackupServerEvent): BackupServerAction[] {
    if (this.current === "failing") return []; // late results while failing change nothing
    return super.noRow(event);
  }

  protected act(event: BackupServerEvent): BackupServerAction[] {
    switch (event.type) {
      case "message":
        return this.#message(event.message);
      case "heard":
        return [];
      case "tick":
        return this.timeRows(
          "client",
          { type: "send-keepalive" },
          this.current !== "committing" && this.current !== "failing",
        );
      case "opened": {
        this.#snapshotId = event.snapshotId;
        const runLines = event.hasParent && event.parentHasLines === true;
        return [
          { type: "send-begin", snapshotId: event.snapshotId, hasParent: event.hasParent },
          ...(runLines ? [{ type: "offer-run-lines" } as const] : []),
          ...(event.hasParent ? [{ type: "stream-parent" } as const] : []),
          { type: "receive", runLines },
        ];
      }
      case "data-end":
        this.#dataEnded = true;
        return this.#commitIfReady();
      case "manifest-written":
        this.#manifestWritten = true;
        return this.#commitIfReady();
      case "committed":
        invariant(event.snapshotId === this.#snapshotId, "committed another snapshot");
        return [
          { type: "send-committed", snapshotId: event.snapshotId },
          { type: "done", snapshotId: event.snapshotId },
        ];
      case "commit-failed":
        return this.fail(event.reason);
      case "client-report":
        return [
          { type: "send-failed", reason: this.failure },
          { type: "failed", reason: this.failure, clientReason: event.reason },
        ];
      default:
        return [];
    }
  }

  #message(message: BackupServerMessage): BackupServerAction[] {
    if (this.current === "awaiting-hello") {
      if (message.type !== "hello") return this.fail(`protocol: ${message.type} before hello`);
      return [{ type: "open" }];
    }
    if (message.type === "progress") return [{ type: "report-progress" }];
    if (message.type === "more" && "of" in message && message.of === "parent") {
      return [{ type: "grant-parent", upTo: (message as { upTo: number }).upTo }];
    }
    if (message.type === "part" && "of" in message && message.of === "manifest") {
      const last = "last" in message && message.last === true;
      return [{ type: "take-manifest-part" }, ...(last ? [{ type: "stop-reading" } as const] : [])];
    }
    return this.fail(`protocol: unexpected ${message.type} message while receiving the archive`);
  }

  #commitIfReady(): BackupServerAction[] {
    if (!this.#dataEnded || !this.#manifestWritten) return [];
    this.current = "committing";
    return [{ type: "commit" }];
  }

  protected fail(reason: string): BackupServerAction[] {
    if (this.current === "failing" || this.ended) return [];
    this.failure = reason;
    this.current = "failing";
    return [
      { type: "abort" },
      { type: "await-client-report", waitMs: GRACE_ROWS.clientReportWait.waitMs },
    ];
  }
}

/**
 * The table as Markdown, for `docs/session.md` (a test keeps the doc equal to it).
 *
 * @returns one Markdown table row per row of {@link BACKUP_SERVER_ROWS}
 */
export function backupServerTableMarkdown(): string {
  return sessionTableMarkdown(BACKUP_SERVER_ROWS, [
    ["any live state", "failure, or no row", "failing", BACKUP_SERVER_FAILURE_RULE],
  ]);
}
