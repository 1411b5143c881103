/**
 * The restore client's side of a session (the agent that receives the snapshot and writes the
 * target) as a pure machine with one table, the counterpart of `restore_server_machine.ts`. Time
 * is an input: the `tick` rows send a keepalive (on every channel) `keepaliveMs` after the last
 * one and fail the session when the server has been silent for `peerSilentMs`
 * (`session_clock.ts`).
 *
 * Today's protocol (`src/core/backup/protocol.ts`, `restore_stream.ts`): the server's
 * `restore-begin` names the snapshot -> the manifest's parts (joined by the pump, then validated
 * and planned: `manifest`, of the begun snapshot) -> the writer works through the plan: for each
 * archive it wants, the agent asks for the members it needs (`archive-wanted`: one request, each
 * archive of the plan at most once) and the server streams them as restore records: a `head`
 * opens a member (its pieces go straight to the file's writer, the hot path, not through the
 * machine) and its `end` closes it; a `problem` is a member the server could not read;
 * `archive-end` ends the archive. A member may be named once, and only by an index that was asked
 * for. Once the writer is through (`restored`: whole, or with files listed as not restored), the
 * agent sends its progress and the end request (`archive: null`), and the server's `restore-done`
 * of the begun snapshot ends the session: the agent is done only once the server is.
 *
 * A file the target refuses (the writer's `write-failed` with scope `file`: a `RestoreError` or a
 * member's own failure) is that file's problem: it is listed, the rest of its member is read past,
 * and the restore goes on; any other write failure (scope `restore`) fails the session, as it did
 * before the machine.
 *
 * On a failure the agent ends at once (the job's tell reports it, `grace.ts`); a server's
 * `failed` (on the control channel, or its report on the error channel) is the cause.
 *
 * Its pump is `runRestoreReceiver` (`src/app/agent/restore_receiver.ts`).
 *
 * @module
 */

import type { SessionTimes } from "./session_clock.ts";
import { SessionMachine } from "./session_machine.ts";
import { type SessionRow, sessionTableMarkdown } from "./table_markdown.ts";

/** The states of a restore client. */
export type RestoreClientState =
  | "awaiting-begin"
  | "receiving-manifest"
  | "writing"
  | "streaming"
  | "member"
  | "finishing"
  | "skipping"
  | "ending"
  | "done"
  | "failed";

/** A control message from the server as the machine sees it (already parsed by the pump). */
export type RestoreClientMessage =
  | { readonly type: "restore-begin"; readonly snapshot: string }
  | { readonly type: "restore-done"; readonly snapshot: string }
  | { readonly type: "part"; readonly of: string }
  | { readonly type: "failed"; readonly message: string }
  | { readonly type: string };

/** A restore record as the machine sees it: its kind, and the member it names. */
export interface RestoreClientRecord {
  readonly kind: "head" | "piece" | "hashed" | "end" | "problem" | "archive-end";
  readonly index?: number;
}

/** What the pump tells the machine; `atMs` is the pump's clock when it happened. */
export type RestoreClientEvent =
  | { readonly type: "message"; readonly atMs: number; readonly message: RestoreClientMessage }
  /** The manifest is joined, valid and planned: its id and the archives the plan reads. */
  | {
    readonly type: "manifest";
    readonly atMs: number;
    readonly snapshotId: string;
    readonly archives: readonly string[];
  }
  /** The writer wants the next archive's members (`members` of them). */
  | {
    readonly type: "archive-wanted";
    readonly atMs: number;
    readonly archive: string;
    readonly members: number;
  }
  /** A record on the data channel (inside a member, pieces only while skipping it). */
  | { readonly type: "record"; readonly atMs: number; readonly record: RestoreClientRecord }
  /** The open member's file is written (its size and SHA-256 matched). */
  | { readonly type: "written"; readonly atMs: number }
  /** The open member's writer failed: the file's problem, or the restore's failure. */
  | {
    readonly type: "write-failed";
    readonly atMs: number;
    readonly scope: "file" | "restore";
    readonly reason: string;
  }
  /** The writer is through the plan (whole, or with files listed as not restored). */
  | { readonly type: "restored"; readonly atMs: number }
  | { readonly type: "heard"; readonly atMs: number }
  | { readonly type: "tick"; readonly atMs: number }
  | { readonly type: "failure"; readonly atMs: number; readonly reason: string }
  /** The server's `failed` report arrived on the error channel. */
  | { readonly type: "server-report"; readonly atMs: number; readonly reason: string };

/** What the machine asks the pump to do, in order. */
export type RestoreClientAction =
  /** Add the part to the manifest being joined (its end posts `manifest`). */
  | { readonly type: "take-manifest-part" }
  /** Write the target from the plan (the writer then posts `archive-wanted`...). */
  | { readonly type: "write-target" }
  | { readonly type: "request-archive"; readonly archive: string }
  /** Give the member's pieces to its file's writer. */
  | { readonly type: "write-member"; readonly index: number }
  /** The open member's pieces ended (`unreadable`: with the server's problem, for the writer). */
  | { readonly type: "end-member"; readonly index: number; readonly unreadable: boolean }
  /** Read past the rest of the open member (its writer stopped). */
  | { readonly type: "skip-member"; readonly index: number }
  /** List the member's file as not restored (the server's problem, or the writer's). */
  | { readonly type: "list-problem"; readonly index: number }
  | { readonly type: "report-progress" }
  /** The archive ended: the writer goes on. */
  | { readonly type: "archive-done" }
  /** Send the last progress and the end request (`archive: null`). */
  | { readonly type: "send-end" }
  | { readonly type: "send-keepalive" }
  /** Stop the writer's reads (the session is failing). */
  | { readonly type: "abort" }
  | { readonly type: "done"; readonly snapshotId: string }
  | { readonly type: "failed"; readonly reason: string; readonly serverReason: string | undefined };

/** One row of the table. */
export type RestoreClientRow = SessionRow<RestoreClientState, RestoreClientEvent["type"]>;

const LIVE: readonly RestoreClientState[] = [
  "awaiting-begin",
  "receiving-manifest",
  "writing",
  "streaming",
  "member",
  "finishing",
  "skipping",
  "ending",
];

/** The table: any (state, event) not in it is a protocol failure (the failure rules). */
export const RESTORE_CLIENT_ROWS: readonly RestoreClientRow[] = [
  {
    state: "awaiting-begin",
    on: "message",
    next: "receiving-manifest",
    rule: "a `restore-begin`: note its snapshot",
  },
  {
    state: "receiving-manifest",
    on: "message",
    next: "receiving-manifest",
    rule: "a manifest `part` is taken (the pump joins, validates and plans it)",
  },
  {
    state: "receiving-manifest",
    on: "manifest",
    next: "writing",
    rule: "of the begun snapshot: write the target from the plan (another snapshot: fail)",
  },
  {
    state: "writing",
    on: "archive-wanted",
    next: "streaming",
    rule: "an archive of the plan not asked for before: send its member request",
  },
  {
    state: "streaming",
    on: "record",
    next: "streaming",
    rule: "`head` of a member asked for and not yet named: write it (member); `problem` of " +
      "one: list its file; `archive-end`: writing; a piece, or another member: fail",
  },
  {
    state: "member",
    on: "record",
    next: "finishing",
    rule: "`end` of the open member: its pieces end; its `problem`: they end with the " +
      "server's reason; anything else: fail",
  },
  {
    state: "member",
    on: "write-failed",
    next: "skipping",
    rule: "scope file: read past the rest of its member (then list it); scope restore: fail",
  },
  {
    state: "finishing",
    on: "written",
    next: "streaming",
    rule: "report progress (the reporter keeps its own pace)",
  },
  {
    state: "finishing",
    on: "write-failed",
    next: "streaming",
    rule: "scope file: list the file, go on; scope restore: fail",
  },
  {
    state: "skipping",
    on: "record",
    next: "streaming",
    rule: "`end` or `problem` of the open member: list its file; anything else: fail",
  },
  {
    state: "writing",
    on: "restored",
    next: "ending",
    rule: "send the last progress and the end request (`archive: null`)",
  },
  {
    state: "ending",
    on: "message",
    next: "ending",
    rule: "the server's `restore-done` of the begun snapshot: done (of another: fail)",
  },
  ...LIVE.flatMap((state): RestoreClientRow[] => [
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
export const RESTORE_CLIENT_FAILURE_RULES: readonly (readonly [string, string, string, string])[] =
  [
    [
      "any live state",
      "message `failed`, server-report",
      "failed",
      "abort; end at once; the server's reason is the cause",
    ],
    [
      "any live state",
      "failure, or no row",
      "failed",
      "abort; end at once (the job's tell reports it)",
    ],
  ];

/** The restore client machine. */
export class RestoreClientMachine
  extends SessionMachine<RestoreClientState, RestoreClientEvent, RestoreClientAction> {
  #snapshotId: string | undefined;
  /** Archives of the plan not yet asked for. */
  #archives = new Set<string>();
  /** The archive being streamed, its member count and the members named so far. */
  #archive = "";
  #members = 0;
  #named = new Set<number>();
  /** The member open (its head taken, its end not yet). */
  #open = -1;

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   */
  constructor(times: SessionTimes, startMs: number) {
    super(times, startMs, "awaiting-begin", RESTORE_CLIENT_ROWS);
  }

  /** A record on the data channel is the server's too. */
  protected override fromPeer(event: RestoreClientEvent): boolean {
    return super.fromPeer(event) || event.type === "record";
  }

  protected override beforeRows(event: RestoreClientEvent): RestoreClientAction[] | undefined {
    if (event.type === "failure") return this.fail(event.reason);
    if (event.type === "server-report") return this.fail(event.reason, event.reason);
    if (event.type === "message" && event.message.type === "failed") {
      const reason = String((event.message as { message: unknown }).message);
      return this.fail(reason, reason);
    }
    return undefined;
  }

  /** No row: a protocol failure that names what came (a message or a record) and when. */
  protected override noRow(event: RestoreClientEvent): RestoreClientAction[] {
    if (event.type === "message") {
      return this.fail(`protocol: unexpected ${event.message.type} message while ${this.current}`);
    }
    if (event.type === "record") {
      return this.fail(`protocol: a ${event.record.kind} record while ${this.current}`);
    }
    return super.noRow(event);
  }

  protected act(event: RestoreClientEvent): RestoreClientAction[] {
    switch (event.type) {
      case "message":
        return this.#message(event.message);
      case "manifest":
        if (event.snapshotId !== this.#snapshotId) {
          return this.fail(
            `protocol: the server sent manifest ${event.snapshotId}, not ${this.#snapshotId}`,
          );
        }
        this.#archives = new Set(event.archives);
        return [{ type: "write-target" }];
      case "archive-wanted":
        return this.#want(event.archive, event.members);
      case "record":
        return this.#record(event.record);
      case "written":
        this.#open = -1;
        return [{ type: "report-progress" }];
      case "write-failed":
        return this.#writeFailed(event.scope, event.reason);
      case "restored":
        return [{ type: "send-end" }];
      case "tick":
        return this.timeRows("server", { type: "send-keepalive" });
      default: // heard: the row says it all
        return [];
    }
  }

  #message(message: RestoreClientMessage): RestoreClientAction[] {
    const snapshot = "snapshot" in message ? String(message.snapshot) : undefined;
    if (this.current === "awaiting-begin" && message.type === "restore-begin") {
      this.#snapshotId = snapshot;
      return [];
    }
    if (
      this.current === "receiving-manifest" && message.type === "part" &&
      "of" in message && message.of === "manifest"
    ) return [{ type: "take-manifest-part" }];
    if (this.current === "ending" && message.type === "restore-done") {
      if (snapshot !== this.#snapshotId) {
        return this.fail(`protocol: the server ended ${snapshot}, not ${this.#snapshotId}`);
      }
      this.current = "done";
      return [{ type: "done", snapshotId: snapshot! }];
    }
    return this.fail(`protocol: unexpected ${message.type} message while ${this.current}`);
  }

  #want(archive: string, members: number): RestoreClientAction[] {
    if (!this.#archives.delete(archive)) {
      return this.fail(`the writer asked for archive ${archive}: not of the plan, or twice`);
    }
    this.#archive = archive;
    this.#members = members;
    this.#named = new Set();
    return [{ type: "request-archive", archive }];
  }

  #record(record: RestoreClientRecord): RestoreClientAction[] {
    const index = record.index ?? -1;
    if (this.current === "streaming") return this.#between(record.kind, index);
    const ofOpen = index === this.#open && (record.kind === "end" || record.kind === "problem");
    if (!ofOpen) {
      return this.fail(
        `protocol: a ${record.kind} record inside member ${this.#open} of archive ${this.#archive}`,
      );
    }
    if (this.current === "skipping") {
      this.#open = -1;
      return [{ type: "list-problem", index }];
    }
    return [{ type: "end-member", index, unreadable: record.kind === "problem" }];
  }

  /** A record between members. */
  #between(kind: RestoreClientRecord["kind"], index: number): RestoreClientAction[] {
    if (kind === "archive-end") {
      this.current = "writing";
      return [{ type: "archive-done" }];
    }
    if (kind !== "head" && kind !== "problem") {
      return this.fail(`protocol: a ${kind} record between members of archive ${this.#archive}`);
    }
    if (!Number.isInteger(index) || index < 0 || index >= this.#members) {
      return this.fail(
        `protocol: member ${index} of archive ${this.#archive} was not asked for ` +
          `(${this.#members} were)`,
      );
    }
    if (this.#named.has(index)) {
      return this.fail(`protocol: member ${index} of archive ${this.#archive} came twice`);
    }
    this.#named.add(index);
    if (kind === "problem") return [{ type: "list-problem", index }];
    this.#open = index;
    this.current = "member";
    return [{ type: "write-member", index }];
  }

  #writeFailed(scope: "file" | "restore", reason: string): RestoreClientAction[] {
    if (scope === "restore") return this.fail(reason);
    const index = this.#open;
    if (this.current === "member") return [{ type: "skip-member", index }];
    this.#open = -1;
    return [{ type: "list-problem", index }];
  }

  protected fail(reason: string, serverReason?: string): RestoreClientAction[] {
    this.failure = reason;
    this.current = "failed";
    return [{ type: "abort" }, { type: "failed", reason, serverReason }];
  }
}

/**
 * The table as Markdown, for `docs/session.md` (a test keeps the doc equal to it).
 *
 * @returns one Markdown table row per row of {@link RESTORE_CLIENT_ROWS}, then the shared rules
 */
export function restoreClientTableMarkdown(): string {
  return sessionTableMarkdown(RESTORE_CLIENT_ROWS, RESTORE_CLIENT_FAILURE_RULES);
}
