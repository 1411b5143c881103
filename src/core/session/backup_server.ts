/**
 * The backup server's side of a session as a pure machine: one table of rows, each a state, the
 * input it takes there, the state it goes to and what it asks the pump to do. The pump
 * (`runBackupServer`) performs the actions (open the snapshot, send, write, commit, abort, wait)
 * and feeds their results back; it makes no decision of its own. Time is an input: the one wait
 * (for the client's own failure report) is an action with its length from the grace rows.
 *
 * The flow: `hello` -> open the snapshot -> `begin` and the parent's parts -> archive bytes (the
 * pump writes them as they come) with `progress` reports and the manifest's parts, in any order
 * -> once the data ended and the manifest is whole: commit -> `committed`. Past the commit point
 * a failure to tell the client changes nothing: the snapshot stands. Any failure before it:
 * abort the snapshot, wait for the client's report, send `failed`, end failed (with the client's
 * reason when it came: the client's failure was the cause).
 *
 * @module
 */

import {
  parseSessionMessage,
  PartJoiner,
  type SessionMessage,
  SessionProtocolError,
  splitIntoParts,
} from "../backup/protocol.ts";
import { failedReport } from "./failed.ts";
import { TableMachine, type TableRow } from "./table_machine.ts";
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

/** What the pump tells the machine. */
export type BackupServerInput =
  /** A control message from the client. */
  | { readonly type: "message"; readonly body: unknown }
  /** The snapshot is open (the repository lock held), with the parent manifest or null. */
  | { readonly type: "opened"; readonly snapshotId: string; readonly parent: unknown }
  /** The archive bytes ended (every chunk before it was written). */
  | { readonly type: "data-end" }
  /** The snapshot was committed with this id. */
  | { readonly type: "committed"; readonly snapshotId: string }
  /** Something failed: a socket, the repository, the client's stream. */
  | { readonly type: "failure"; readonly error: unknown }
  /** The wait for the client's own report ended: its reason, if it came. */
  | { readonly type: "client-report"; readonly reason: string | undefined };

/** What the machine asks the pump to do, in order. */
export type BackupServerAction =
  /** Read the client's next control message (one; its result is a `message` or a `failure`). */
  | { readonly type: "receive" }
  | { readonly type: "open"; readonly hello: Extract<SessionMessage, { type: "hello" }> }
  | {
    readonly type: "send";
    readonly channel: "control" | "error";
    readonly body: unknown;
    /** A failure to send changes nothing (past the commit point, or already failing). */
    readonly bestEffort?: boolean;
  }
  | {
    readonly type: "progress";
    readonly files: number;
    readonly bytes: number;
    readonly totalBytes: number;
  }
  | { readonly type: "commit"; readonly manifest: unknown }
  | { readonly type: "abort" }
  | { readonly type: "await-client-report"; readonly waitMs: number }
  | { readonly type: "done"; readonly snapshotId: string }
  | {
    readonly type: "failed";
    readonly error: unknown;
    /** The client's own reason, when it reported one: the failure is then the client's. */
    readonly clientReason: string | undefined;
  };

/** One row of the backup server's table. */
export type BackupServerRow = TableRow<BackupServerState, BackupServerInput["type"]>;

/** The table: every (state, input) the machine takes; anything else is a protocol failure. */
export const BACKUP_SERVER_ROWS: readonly BackupServerRow[] = [
  { state: "awaiting-hello", on: "message", next: "opening", rule: "a `hello`: open the snapshot" },
  {
    state: "opening",
    on: "opened",
    next: "transfer",
    rule: "send `begin`, then the parent's parts",
  },
  {
    state: "transfer",
    on: "message",
    next: "transfer",
    rule:
      "`progress` is reported; a manifest part joins the manifest; once it is whole and the data ended: commit",
  },
  {
    state: "transfer",
    on: "data-end",
    next: "transfer",
    rule: "the data ended; once the manifest is whole too: commit",
  },
  {
    state: "committing",
    on: "committed",
    next: "done",
    rule:
      "the commit point: send `committed` (best effort: the snapshot stands if the client cannot hear)",
  },
  {
    state: "failing",
    on: "client-report",
    next: "failed",
    rule: "send `failed` (best effort); the client's reason, if it came, is the cause",
  },
];

const FAILURE_ROW =
  "in any state before the end, a failure aborts the snapshot and waits for the client's report";

/** The backup server machine. */
export class BackupServerMachine
  extends TableMachine<BackupServerState, BackupServerInput, BackupServerAction> {
  #manifest = new PartJoiner("manifest");
  #dataEnded = false;
  #failure: unknown;

  constructor() {
    super("backup server", "awaiting-hello", BACKUP_SERVER_ROWS, ["done", "failed"], "failing");
  }

  /** The failure rule, in words (the row every live state shares). */
  static readonly failureRule: string = FAILURE_ROW;

  /**
   * Starts: the first thing to do is to read the client's `hello`.
   *
   * @returns the actions
   */
  start(): BackupServerAction[] {
    return [{ type: "receive" }];
  }

  protected act(input: BackupServerInput): BackupServerAction[] {
    switch (input.type) {
      case "message":
        return this.#message(input.body);
      case "opened":
        return [
          {
            type: "send",
            channel: "control",
            body: { type: "begin", snapshotId: input.snapshotId, hasParent: input.parent !== null },
          },
          ...(input.parent === null ? [] : splitIntoParts("parent", input.parent))
            .map((part): BackupServerAction => ({ type: "send", channel: "control", body: part })),
          { type: "receive" },
        ];
      case "data-end":
        this.#dataEnded = true;
        return this.#commitIfReady();
      case "committed":
        return [
          {
            type: "send",
            channel: "control",
            body: { type: "committed", snapshotId: input.snapshotId },
            bestEffort: true,
          },
          { type: "done", snapshotId: input.snapshotId },
        ];
      case "client-report":
        return [
          failedReport(this.#failure),
          { type: "failed", error: this.#failure, clientReason: input.reason },
        ];
      default:
        return [];
    }
  }

  #message(body: unknown): BackupServerAction[] {
    if (this.state === "awaiting-hello") {
      return [{ type: "open", hello: parseSessionMessage(body, "hello") }];
    }
    const message = parseSessionMessage(body);
    if (message.type === "progress" && this.state === "transfer") {
      const { files, bytes, totalBytes } = message;
      return [{ type: "progress", files, bytes, totalBytes }, { type: "receive" }];
    }
    if (message.type === "part" && this.state === "transfer") {
      this.#manifest.add(message);
      return this.#manifest.done ? this.#commitIfReady() : [{ type: "receive" }];
    }
    throw new SessionProtocolError(
      `unexpected ${message.type} message while receiving the archive`,
    );
  }

  #commitIfReady(): BackupServerAction[] {
    if (!this.#dataEnded || !this.#manifest.done) return [];
    this.goTo("committing");
    return [{ type: "commit", manifest: this.#manifest.value() }];
  }

  protected failed(error: unknown): BackupServerAction[] {
    this.#failure = error;
    return [
      { type: "abort" },
      { type: "await-client-report", waitMs: GRACE_ROWS.clientReportWait.waitMs },
    ];
  }
}
