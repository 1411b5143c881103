/**
 * The backup server's side of a session as a pure machine with one table: each row is a state,
 * the event it takes there, the state it goes to and the rule it follows. Time is an input: every
 * event carries `atMs`, and the `tick` rows send a keepalive (on every channel) `keepaliveMs` after
 * the last one and fail the session when the client has been silent for `peerSilentMs`. The
 * failure row aborts the snapshot and waits the `clientReportWait` grace row (`grace.ts`) for the
 * client's own report before it sends `failed`.
 *
 * Today's protocol (`src/core/backup/protocol.ts`): `hello` -> open the snapshot -> `begin` and,
 * when there is a parent, its line stream (credited by the client's `more`) -> archive bytes on
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
import { GRACE_ROWS } from "./grace.ts";

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
  | { readonly type: "stream-parent" }
  /** Start taking the archive's bytes (data channel) and the manifest's lines. */
  | { readonly type: "receive" }
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
export interface BackupServerRow {
  readonly state: BackupServerState;
  readonly on: BackupServerEvent["type"];
  readonly next: BackupServerState;
  readonly rule: string;
}

const LIVE: readonly BackupServerState[] = ["awaiting-hello", "opening", "transfer", "committing"];

/** The table: any (state, event) not in it is a protocol failure (the failure row). */
export const BACKUP_SERVER_ROWS: readonly BackupServerRow[] = [
  { state: "awaiting-hello", on: "message", next: "opening", rule: "a `hello`: open the snapshot" },
  {
    state: "opening",
    on: "opened",
    next: "transfer",
    rule: "send `begin`; with a parent, stream its lines within the client's credit; take " +
      "the archive's bytes and the manifest's lines",
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
export interface BackupServerTimes {
  /** Send a keepalive (on every channel) this long after the last one, ms. */
  readonly keepaliveMs: number;
  /** Fail when nothing was heard from the client for this long, ms. */
  readonly peerSilentMs: number;
}

/** The backup server machine. */
export class BackupServerMachine {
  #state: BackupServerState = "awaiting-hello";
  #snapshotId: string | undefined;
  #dataEnded = false;
  #manifestWritten = false;
  #lastKeepaliveMs: number;
  #lastHeardMs: number;
  #nowMs: number;
  #failure = "";

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   */
  constructor(readonly times: BackupServerTimes, startMs: number) {
    invariant(times.keepaliveMs > 0, `keepaliveMs must be positive, not ${times.keepaliveMs}`);
    invariant(
      times.peerSilentMs > times.keepaliveMs,
      `peerSilentMs (${times.peerSilentMs}) must exceed keepaliveMs (${times.keepaliveMs})`,
    );
    this.#lastKeepaliveMs = this.#lastHeardMs = this.#nowMs = startMs;
  }

  /** The state it is in. */
  get state(): BackupServerState {
    return this.#state;
  }

  /** Why it is failing or failed ("" while it is not). */
  get failureReason(): string {
    return this.#failure;
  }

  /** Whether it has ended (done or failed): it takes nothing more. */
  get ended(): boolean {
    return this.#state === "done" || this.#state === "failed";
  }

  /**
   * Takes one event.
   *
   * @param event what happened, with the pump's clock
   * @returns what to do, in order
   */
  handle(event: BackupServerEvent): BackupServerAction[] {
    invariant(event.atMs >= this.#nowMs, `time went back: ${event.atMs} < ${this.#nowMs}`);
    this.#nowMs = event.atMs;
    if (this.ended) return [];
    if (event.type === "failure" && this.#state !== "committing") return this.#fail(event.reason);
    const row = BACKUP_SERVER_ROWS.find((r) => r.state === this.#state && r.on === event.type);
    if (row === undefined) {
      if (this.#state === "failing") return []; // late results while failing change nothing
      return this.#fail(`protocol: no row for ${event.type} in ${this.#state}`);
    }
    const before = this.#state;
    const actions = this.#act(event);
    if (this.#state === before) this.#state = row.next;
    if (actions.some((a) => a.type === "send-keepalive")) this.#lastKeepaliveMs = event.atMs;
    return actions;
  }

  #act(event: BackupServerEvent): BackupServerAction[] {
    switch (event.type) {
      case "message":
        this.#lastHeardMs = event.atMs;
        return this.#message(event.message);
      case "heard":
        this.#lastHeardMs = event.atMs;
        return [];
      case "tick":
        return this.#tick(event.atMs);
      case "opened":
        this.#snapshotId = event.snapshotId;
        return [
          { type: "send-begin", snapshotId: event.snapshotId, hasParent: event.hasParent },
          ...(event.hasParent ? [{ type: "stream-parent" } as const] : []),
          { type: "receive" },
        ];
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
        return this.#fail(event.reason);
      case "client-report":
        return [
          { type: "send-failed", reason: this.#failure },
          { type: "failed", reason: this.#failure, clientReason: event.reason },
        ];
      default:
        return [];
    }
  }

  #message(message: BackupServerMessage): BackupServerAction[] {
    if (this.#state === "awaiting-hello") {
      if (message.type !== "hello") return this.#fail(`protocol: ${message.type} before hello`);
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
    return this.#fail(`protocol: unexpected ${message.type} message while receiving the archive`);
  }

  #tick(nowMs: number): BackupServerAction[] {
    const silentMs = nowMs - this.#lastHeardMs;
    if (this.#state !== "committing" && silentMs >= this.times.peerSilentMs) {
      return this.#fail(`the client was silent for ${Math.round(silentMs)} ms`);
    }
    if (nowMs - this.#lastKeepaliveMs >= this.times.keepaliveMs) {
      return [{ type: "send-keepalive" }];
    }
    return [];
  }

  #commitIfReady(): BackupServerAction[] {
    if (!this.#dataEnded || !this.#manifestWritten) return [];
    this.#state = "committing";
    return [{ type: "commit" }];
  }

  #fail(reason: string): BackupServerAction[] {
    if (this.#state === "failing" || this.ended) return [];
    this.#failure = reason;
    this.#state = "failing";
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
  const cells = [
    ["state", "on", "next", "rule"],
    ...BACKUP_SERVER_ROWS.map((row) => [row.state, row.on, row.next, row.rule]),
    ["any live state", "failure, or no row", "failing", BACKUP_SERVER_FAILURE_RULE],
  ];
  // Padded as `deno fmt` pads a Markdown table, so the formatted doc holds it verbatim.
  const widths = cells[0]!.map((_, c) => Math.max(3, ...cells.map((row) => row[c]!.length)));
  const line = (row: string[]) =>
    `| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join("\n");
}
