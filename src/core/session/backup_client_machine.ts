/**
 * The backup client's side of a session as a pure machine with one table, the counterpart of
 * `backup_server_machine.ts`. Time is an input: every event carries `atMs`; the `tick` rows send
 * a keepalive (on every channel) `keepaliveMs` after the last one and fail the session when the
 * server has been silent for `peerSilentMs`.
 *
 * Today's protocol (`src/core/backup/protocol.ts`): identify the source -> `hello` -> the
 * server's `begin` -> prepare the snapshot (with a parent, from the parent's line stream, whose
 * parts the client takes and credits) -> pack the archive into the data channel, end it, send the
 * manifest's line stream (credited by the server's `more`; with run lines where the server
 * offered them, a `more` of manifest granting 0 while preparing) -> the server's `committed` of this
 * snapshot. A `committed` before the manifest's last part went out, or of another snapshot, is a
 * protocol failure.
 *
 * On a failure the client sends its `failed` report at once and ends: it does not wait for the
 * server's account (the server waits `clientReportWait` for the client's, and the job waits
 * `errorGrace` for both, `grace.ts`). A server's `failed` report (`server-report`) that comes
 * while the client is live fails the client with the server's reason as the cause.
 *
 * Its pump is `runBackupClient` (`src/app/agent/backup_client.ts`).
 *
 * @module
 */

import type { SessionTimes } from "./session_clock.ts";
import { SessionMachine } from "./session_machine.ts";
import { GRACE_ROWS } from "./grace.ts";
import { type SessionRow, sessionTableMarkdown } from "./table_markdown.ts";

/** The states of a backup client. */
export type BackupClientState =
  | "identifying"
  | "awaiting-begin"
  | "preparing"
  | "sending"
  | "awaiting-committed"
  | "done"
  | "failed";

/** A control message from the server as the machine sees it (already parsed by the pump). */
export type BackupClientMessage =
  | { readonly type: "begin"; readonly snapshotId: string; readonly hasParent: boolean }
  | { readonly type: "committed"; readonly snapshotId: string }
  | { readonly type: "more"; readonly of: "parent" | "manifest"; readonly upTo: number }
  | { readonly type: "part"; readonly of: "parent" | "manifest" | "members" }
  | { readonly type: string };

/** What the pump tells the machine; `atMs` is the pump's clock when it happened. */
export type BackupClientEvent =
  /** The source's identity is known (`sourceIdentity`). */
  | { readonly type: "identified"; readonly atMs: number; readonly sourceId: string }
  | { readonly type: "message"; readonly atMs: number; readonly message: BackupClientMessage }
  /** Any frame from the server (a keepalive, say): it is alive. */
  | { readonly type: "heard"; readonly atMs: number }
  /** The snapshot is prepared (the parent read, the tree planned). */
  | { readonly type: "prepared"; readonly atMs: number }
  /** The archive's data ended and the manifest's last part went out. */
  | { readonly type: "sent"; readonly atMs: number }
  | { readonly type: "tick"; readonly atMs: number }
  | { readonly type: "failure"; readonly atMs: number; readonly reason: string }
  /** The server's `failed` report arrived on the error channel. */
  | { readonly type: "server-report"; readonly atMs: number; readonly reason: string };

/** What the machine asks the pump to do, in order. */
export type BackupClientAction =
  | { readonly type: "send-hello"; readonly sourceId: string }
  | { readonly type: "prepare"; readonly snapshotId: string; readonly hasParent: boolean }
  | { readonly type: "take-parent-part" }
  | { readonly type: "grant-manifest"; readonly upTo: number }
  /**
   * Pack the archive into the data channel, end it, then send the manifest's lines; with
   * `runLines` (the server offered them), runs of the parent's unchanged lines as run lines.
   */
  | { readonly type: "pack-and-send"; readonly runLines: boolean }
  | { readonly type: "send-keepalive" }
  /** Stop the streams and the work in flight. */
  | { readonly type: "abort" }
  | { readonly type: "send-failed"; readonly reason: string }
  | { readonly type: "done"; readonly snapshotId: string }
  | { readonly type: "failed"; readonly reason: string; readonly serverReason: string | undefined };

/** One row of the table. */
export type BackupClientRow = SessionRow<BackupClientState, BackupClientEvent["type"]>;

const LIVE: readonly BackupClientState[] = [
  "identifying",
  "awaiting-begin",
  "preparing",
  "sending",
  "awaiting-committed",
];
const STREAMING: readonly BackupClientState[] = ["preparing", "sending", "awaiting-committed"];

/** The table: any (state, event) not in it is a protocol failure (the failure rule). */
export const BACKUP_CLIENT_ROWS: readonly BackupClientRow[] = [
  {
    state: "identifying",
    on: "identified",
    next: "awaiting-begin",
    rule: "send `hello` with the source's identity",
  },
  {
    state: "awaiting-begin",
    on: "message",
    next: "preparing",
    rule: "a `begin`: prepare the snapshot (with a parent, from its line stream)",
  },
  ...STREAMING.map((state): BackupClientRow => ({
    state,
    on: "message",
    next: state,
    rule: state === "awaiting-committed"
      ? "a late `more` is taken; `committed` of this snapshot: done (of another: fail)"
      : "a parent `part` is taken; `more` of manifest grants credit (granting 0 while " +
        "preparing: the server takes run lines); `committed` now fails",
  })),
  {
    state: "preparing",
    on: "prepared",
    next: "sending",
    rule: "pack the archive into the data channel, end it, send the manifest's lines (run " +
      "lines if offered)",
  },
  {
    state: "sending",
    on: "sent",
    next: "awaiting-committed",
    rule: "wait for the server's `committed`",
  },
  ...LIVE.flatMap((state): BackupClientRow[] => [
    {
      state,
      on: "tick",
      next: state,
      rule: "keepaliveMs since the last keepalive: send one; server silent for peerSilentMs: fail",
    },
    { state, on: "heard", next: state, rule: "the server is alive" },
  ]),
];

/** The rules every live state shares. */
export const BACKUP_CLIENT_FAILURE_RULES: readonly (readonly [string, string, string, string])[] = [
  [
    "any live state",
    "server-report",
    "failed",
    "abort; send `failed`; the server's reason is the cause",
  ],
  [
    "any live state",
    "failure, or no row",
    "failed",
    "abort; send `failed` at once (no wait: the server waits clientReportWait " +
    `(${GRACE_ROWS.clientReportWait.waitMs} ms) for it, the job errorGrace ` +
    `(${GRACE_ROWS.errorGrace.waitMs} ms) for both)`,
  ],
];

/** The machine's time rules. */
export type BackupClientTimes = SessionTimes;

/** The backup client machine. */
export class BackupClientMachine
  extends SessionMachine<BackupClientState, BackupClientEvent, BackupClientAction> {
  #snapshotId: string | undefined;
  /** The server offered to take run lines (a `more` of manifest granting 0 while preparing). */
  #runLinesOffered = false;

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   */
  constructor(times: BackupClientTimes, startMs: number) {
    super(times, startMs, "identifying", BACKUP_CLIENT_ROWS);
  }

  protected override beforeRows(event: BackupClientEvent): BackupClientAction[] | undefined {
    if (event.type === "failure") return this.fail(event.reason);
    if (event.type === "server-report") return this.fail(event.reason, event.reason);
    return undefined;
  }

  protected act(event: BackupClientEvent): BackupClientAction[] {
    switch (event.type) {
      case "identified":
        return [{ type: "send-hello", sourceId: event.sourceId }];
      case "message":
        return this.#message(event.message);
      case "heard":
        return [];
      case "tick":
        return this.timeRows("server", { type: "send-keepalive" });
      case "prepared":
        return [{ type: "pack-and-send", runLines: this.#runLinesOffered }];
      default: // "sent": the row's next state says it all
        return [];
    }
  }

  #message(message: BackupClientMessage): BackupClientAction[] {
    if (this.current === "awaiting-begin") {
      if (message.type !== "begin") return this.fail(`protocol: ${message.type} before begin`);
      const begin = message as { snapshotId: string; hasParent: boolean };
      this.#snapshotId = begin.snapshotId;
      return [{ type: "prepare", snapshotId: begin.snapshotId, hasParent: begin.hasParent }];
    }
    const of = "of" in message ? message.of : undefined;
    if (message.type === "more" && of === "manifest") {
      const upTo = (message as { upTo: number }).upTo;
      // The offer (`RUN_LINES_OFFER`) comes before the parent's lines; a real grant is never 0.
      if (upTo === 0 && this.current === "preparing") this.#runLinesOffered = true;
      return [{ type: "grant-manifest", upTo }];
    }
    if (this.current === "awaiting-committed") {
      if (message.type !== "committed") return this.fail(`protocol: unexpected ${message.type}`);
      const committed = (message as { snapshotId: string }).snapshotId;
      if (committed !== this.#snapshotId) {
        return this.fail(`protocol: server committed ${committed}, not ${this.#snapshotId}`);
      }
      this.current = "done";
      return [{ type: "done", snapshotId: committed }];
    }
    if (message.type === "part" && of === "parent") return [{ type: "take-parent-part" }];
    return this.fail(`protocol: unexpected ${message.type} message while ${this.current}`);
  }

  protected fail(reason: string, serverReason?: string): BackupClientAction[] {
    this.failure = reason;
    this.current = "failed";
    return [
      { type: "abort" },
      { type: "send-failed", reason },
      { type: "failed", reason, serverReason },
    ];
  }
}

/**
 * The table as Markdown, for `docs/session.md` (a test keeps the doc equal to it).
 *
 * @returns one Markdown table row per row of {@link BACKUP_CLIENT_ROWS}, then the shared rules
 */
export function backupClientTableMarkdown(): string {
  return sessionTableMarkdown(BACKUP_CLIENT_ROWS, BACKUP_CLIENT_FAILURE_RULES);
}
