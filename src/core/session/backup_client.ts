/**
 * The backup client's side of a session as a pure machine: one table of rows, as the server's.
 * The pump (`runBackupClient`) performs the actions (name the source, send, read, prepare the
 * snapshot, pack it into the data channel) and feeds their results back.
 *
 * The flow: name the source -> `hello` -> `begin` -> the parent's parts (when the server said
 * there is a parent) -> prepare the snapshot against the parent -> pack (the archive bytes, the
 * end of data, the unreadable entries) -> the manifest's parts -> `committed` for this snapshot.
 * Any failure: look whether the server already reported its own, send `failed` on the error
 * channel, end failed (with the server's reason when it had one: the server's failure was the
 * cause).
 *
 * @module
 */

import {
  parseSessionMessage,
  PartJoiner,
  SessionProtocolError,
  splitIntoParts,
} from "../backup/protocol.ts";
import { failedReport } from "./failed.ts";
import { TableMachine, type TableRow } from "./table_machine.ts";

/** The states of a backup client. */
export type BackupClientState =
  | "naming"
  | "awaiting-begin"
  | "parent"
  | "preparing"
  | "packing"
  | "awaiting-committed"
  | "done"
  | "failing"
  | "failed";

/** What the pump tells the machine. */
export type BackupClientInput =
  /** The source's identity (its real path). */
  | { readonly type: "named"; readonly sourceId: string }
  /** A control message from the server. */
  | { readonly type: "message"; readonly body: unknown }
  /** The snapshot is planned against the parent. */
  | { readonly type: "prepared" }
  /** The archive was sent and its data ended; the manifest to commit. */
  | { readonly type: "packed"; readonly manifest: unknown }
  /** Something failed: the source, a socket, the server's stream. */
  | { readonly type: "failure"; readonly error: unknown }
  /** Whether the server had reported its own failure by now. */
  | { readonly type: "server-report"; readonly reason: string | undefined };

/** What the machine asks the pump to do, in order. */
export type BackupClientAction =
  | { readonly type: "name-source" }
  | { readonly type: "receive" }
  | {
    readonly type: "send";
    readonly channel: "control" | "error";
    readonly body: unknown;
    /** A failure to send changes nothing (the side is already failing). */
    readonly bestEffort?: boolean;
  }
  | {
    readonly type: "prepare";
    readonly sourceId: string;
    readonly snapshotId: string;
    readonly parent: unknown;
  }
  | { readonly type: "pack"; readonly snapshotId: string }
  | { readonly type: "check-server-report" }
  | { readonly type: "done"; readonly snapshotId: string }
  | {
    readonly type: "failed";
    readonly error: unknown;
    /** The server's own reason, when it had reported one. */
    readonly serverReason: string | undefined;
  };

/** What the `hello` says besides the source's identity. */
export interface BackupClientHello {
  readonly mode: "fs" | "db";
  readonly source: string;
  readonly incremental: boolean;
}

/** One row of the backup client's table. */
export type BackupClientRow = TableRow<BackupClientState, BackupClientInput["type"]>;

/** The table; a failure in any live state is the shared failure row. */
export const BACKUP_CLIENT_ROWS: readonly BackupClientRow[] = [
  {
    state: "naming",
    on: "named",
    next: "awaiting-begin",
    rule: "send `hello` (mode, source, its identity, incremental); read the answer",
  },
  {
    state: "awaiting-begin",
    on: "message",
    next: "preparing",
    rule: "a `begin`: read the parent's parts when it has one (state parent), else prepare",
  },
  {
    state: "parent",
    on: "message",
    next: "parent",
    rule: "a parent part joins the parent; once it is whole: prepare against it",
  },
  { state: "preparing", on: "prepared", next: "packing", rule: "pack into the data channel" },
  {
    state: "packing",
    on: "packed",
    next: "awaiting-committed",
    rule: "send the manifest's parts; read the answer",
  },
  {
    state: "awaiting-committed",
    on: "message",
    next: "done",
    rule: "a `committed` for this snapshot: done (for another: a protocol failure)",
  },
  {
    state: "failing",
    on: "server-report",
    next: "failed",
    rule: "send `failed` on the error channel (best effort); the server's reason, if it had " +
      "one, is the cause",
  },
];

/** The backup client machine. */
export class BackupClientMachine
  extends TableMachine<BackupClientState, BackupClientInput, BackupClientAction> {
  #sourceId = "";
  #snapshotId = "";
  #parent: PartJoiner | undefined;
  #failure: unknown;

  /** @param hello what the `hello` says besides the source's identity */
  constructor(readonly hello: BackupClientHello) {
    super("backup client", "naming", BACKUP_CLIENT_ROWS, ["done", "failed"], "failing");
  }

  /**
   * Starts: the first thing to do is to name the source.
   *
   * @returns the actions
   */
  start(): BackupClientAction[] {
    return [{ type: "name-source" }];
  }

  protected act(input: BackupClientInput): BackupClientAction[] {
    switch (input.type) {
      case "named":
        this.#sourceId = input.sourceId;
        return [
          {
            type: "send",
            channel: "control",
            body: {
              type: "hello",
              mode: this.hello.mode,
              source: this.hello.source,
              sourceId: input.sourceId,
              incremental: this.hello.incremental,
            },
          },
          { type: "receive" },
        ];
      case "message":
        return this.#message(input.body);
      case "prepared":
        return [{ type: "pack", snapshotId: this.#snapshotId }];
      case "packed":
        return [
          ...splitIntoParts("manifest", input.manifest).map((part): BackupClientAction => ({
            type: "send",
            channel: "control",
            body: part,
          })),
          { type: "receive" },
        ];
      case "server-report":
        return [
          failedReport(this.#failure),
          { type: "failed", error: this.#failure, serverReason: input.reason },
        ];
      default:
        return [];
    }
  }

  #message(body: unknown): BackupClientAction[] {
    if (this.state === "awaiting-begin") {
      const begin = parseSessionMessage(body, "begin");
      this.#snapshotId = begin.snapshotId;
      if (!begin.hasParent) return this.#prepare(null);
      this.#parent = new PartJoiner("parent");
      this.goTo("parent");
      return [{ type: "receive" }];
    }
    if (this.state === "parent") {
      this.#parent!.add(parseSessionMessage(body, "part"));
      if (!this.#parent!.done) return [{ type: "receive" }];
      const parent = this.#parent!.value();
      this.goTo("preparing");
      return this.#prepare(parent);
    }
    const committed = parseSessionMessage(body, "committed");
    if (committed.snapshotId !== this.#snapshotId) {
      throw new SessionProtocolError(
        `server committed ${committed.snapshotId}, not ${this.#snapshotId}`,
      );
    }
    return [{ type: "done", snapshotId: this.#snapshotId }];
  }

  #prepare(parent: unknown): BackupClientAction[] {
    return [{
      type: "prepare",
      sourceId: this.#sourceId,
      snapshotId: this.#snapshotId,
      parent,
    }];
  }

  protected failed(error: unknown): BackupClientAction[] {
    this.#failure = error;
    return [{ type: "check-server-report" }];
  }
}
