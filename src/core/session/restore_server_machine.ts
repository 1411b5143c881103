/**
 * The restore server's side of a session (the server sends, the agent receives and writes) as a
 * pure machine with one table, the same shape as the backup machines: time is an input, the
 * `tick` rows send a keepalive (on every channel) `keepaliveMs` after the last one and fail the
 * session when the agent has been silent for `peerSilentMs` (`session_clock.ts`).
 *
 * Today's protocol (`src/core/backup/protocol.ts`, `restore_stream.ts`): open the repository and
 * resolve the snapshot -> `restore-begin` and the manifest's parts -> then, one at a time, the
 * agent's member requests (`part`s of `members`, with `progress` reports on the way): a request
 * names an archive the snapshot's files use, each at most once, and the server streams its
 * members as restore records, ending with `archive-end`; a request for no archive (`null`) ends
 * the restore (answered with `restore-done`, so the agent knows the server is done). A request
 * that arrives while an archive still streams waits for its end.
 *
 * On a failure the server ends at once (the job's `tell` reports it, `grace.ts`); an agent's
 * `failed` on the control channel is the agent's account (the cause).
 *
 * Its pump is `runRestoreSender` (`src/app/server/restore_sender.ts`).
 *
 * @module
 */

import { invariant } from "../assert.ts";
import type { SessionTimes } from "./session_clock.ts";
import { SessionMachine } from "./session_machine.ts";
import { type SessionRow, sessionTableMarkdown } from "./table_markdown.ts";

/** The states of a restore server. */
export type RestoreServerState =
  | "opening"
  | "sending-manifest"
  | "awaiting-request"
  | "streaming"
  | "done"
  | "failed";

/** A control message from the agent as the machine sees it (already parsed by the pump). */
export type RestoreServerMessage =
  | { readonly type: "progress" }
  | { readonly type: "part"; readonly of: string }
  | { readonly type: "failed"; readonly message: string }
  | { readonly type: string };

/** What the pump tells the machine; `atMs` is the pump's clock when it happened. */
export type RestoreServerEvent =
  /** The snapshot is resolved: the archives its files use. */
  | { readonly type: "opened"; readonly atMs: number; readonly archives: readonly string[] }
  | { readonly type: "manifest-sent"; readonly atMs: number }
  | { readonly type: "message"; readonly atMs: number; readonly message: RestoreServerMessage }
  /** The pump joined a whole member request: its archive, or `null` for the end. */
  | { readonly type: "request"; readonly atMs: number; readonly archive: string | null }
  | { readonly type: "archive-sent"; readonly atMs: number }
  | { readonly type: "heard"; readonly atMs: number }
  | { readonly type: "tick"; readonly atMs: number }
  | { readonly type: "failure"; readonly atMs: number; readonly reason: string };

/** What the machine asks the pump to do, in order. */
export type RestoreServerAction =
  | { readonly type: "send-manifest" }
  | { readonly type: "report-progress" }
  /** Add the part to the member request being joined (its end posts `request`). */
  | { readonly type: "take-request-part" }
  | { readonly type: "stream-archive"; readonly archive: string }
  | { readonly type: "send-keepalive" }
  /** Answer the end request with `restore-done` (best effort: the server is done). */
  | { readonly type: "send-restore-done" }
  | { readonly type: "done" }
  | {
    readonly type: "failed";
    readonly reason: string;
    readonly agentReason: string | undefined;
  };

/** One row of the table. */
export type RestoreServerRow = SessionRow<RestoreServerState, RestoreServerEvent["type"]>;

const LIVE: readonly RestoreServerState[] = [
  "opening",
  "sending-manifest",
  "awaiting-request",
  "streaming",
];

/** The table: any (state, event) not in it is a protocol failure (the failure rules). */
export const RESTORE_SERVER_ROWS: readonly RestoreServerRow[] = [
  {
    state: "opening",
    on: "opened",
    next: "sending-manifest",
    rule: "send `restore-begin` and the manifest's parts",
  },
  {
    state: "sending-manifest",
    on: "manifest-sent",
    next: "awaiting-request",
    rule: "a request waiting already is served now",
  },
  ...(["sending-manifest", "awaiting-request", "streaming"] as const).map((
    state,
  ): RestoreServerRow => ({
    state,
    on: "message",
    next: state,
    rule: "`progress` is reported; a `members` `part` is taken; `failed` is the agent's account",
  })),
  ...(["sending-manifest", "streaming"] as const).map((state): RestoreServerRow => ({
    state,
    on: "request",
    next: state,
    rule: "kept until the stream in progress ends (one at most)",
  })),
  {
    state: "awaiting-request",
    on: "request",
    next: "streaming",
    rule: "an archive of the snapshot not asked for before: stream its members, then " +
      "`archive-end`; `null`: send `restore-done`, done",
  },
  {
    state: "streaming",
    on: "archive-sent",
    next: "awaiting-request",
    rule: "a request waiting already is served now",
  },
  ...LIVE.flatMap((state): RestoreServerRow[] => [
    {
      state,
      on: "tick",
      next: state,
      rule: "keepaliveMs since the last keepalive: send one; agent silent for peerSilentMs: fail",
    },
    { state, on: "heard", next: state, rule: "the agent is alive" },
  ]),
];

/** The rule every live state shares. */
export const RESTORE_SERVER_FAILURE_RULE =
  "end at once (the job's tell reports it); an agent's `failed` is the cause";

/** The restore server machine. */
export class RestoreServerMachine
  extends SessionMachine<RestoreServerState, RestoreServerEvent, RestoreServerAction> {
  #archives = new Set<string>();
  #requestsLeft = 0;
  #waiting: { archive: string | null } | undefined;

  /**
   * @param times the keepalive and silence rules
   * @param startMs the clock when the session was established
   */
  constructor(times: SessionTimes, startMs: number) {
    super(times, startMs, "opening", RESTORE_SERVER_ROWS);
  }

  protected override beforeRows(event: RestoreServerEvent): RestoreServerAction[] | undefined {
    return event.type === "failure" ? this.fail(event.reason) : undefined;
  }

  protected act(event: RestoreServerEvent): RestoreServerAction[] {
    switch (event.type) {
      case "opened":
        this.#archives = new Set(event.archives);
        this.#requestsLeft = event.archives.length + 1; // one per archive, then the end
        return [{ type: "send-manifest" }];
      case "message":
        return this.#message(event.message);
      case "heard":
        return [];
      case "tick":
        return this.timeRows("agent", { type: "send-keepalive" });
      case "request":
        if (this.current !== "awaiting-request") {
          invariant(this.#waiting === undefined, "a second request while one waits");
          this.#waiting = { archive: event.archive };
          return [];
        }
        return this.#serve(event.archive);
      default: // manifest-sent, archive-sent: serve a request that waited
        return this.#serveWaiting();
    }
  }

  #serveWaiting(): RestoreServerAction[] {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    this.current = "awaiting-request";
    return waiting === undefined ? [] : this.#serve(waiting.archive);
  }

  #serve(archive: string | null): RestoreServerAction[] {
    if (this.#requestsLeft-- <= 0) {
      return this.fail("protocol: more archive requests than archives");
    }
    if (archive === null) {
      this.current = "done";
      return [{ type: "send-restore-done" }, { type: "done" }];
    }
    if (!this.#archives.delete(archive)) {
      return this.fail(
        `protocol: archive ${archive} holds none of the snapshot's files, or was asked for twice`,
      );
    }
    this.current = "streaming";
    return [{ type: "stream-archive", archive }];
  }

  #message(message: RestoreServerMessage): RestoreServerAction[] {
    if (message.type === "progress") return [{ type: "report-progress" }];
    if (message.type === "part" && "of" in message && message.of === "members") {
      if (this.#waiting !== undefined) {
        return this.fail("protocol: a second member request while one waits");
      }
      return [{ type: "take-request-part" }];
    }
    if (message.type === "failed" && "message" in message) {
      const reason = String(message.message);
      return this.fail(reason, reason);
    }
    return this.fail(`protocol: unexpected ${message.type} during a restore`);
  }

  protected fail(reason: string, agentReason?: string): RestoreServerAction[] {
    this.failure = reason;
    this.current = "failed";
    return [{ type: "failed", reason, agentReason }];
  }
}

/**
 * The table as Markdown, for `docs/session.md` (a test keeps the doc equal to it).
 *
 * @returns one Markdown table row per row of {@link RESTORE_SERVER_ROWS}, then the shared rule
 */
export function restoreServerTableMarkdown(): string {
  return sessionTableMarkdown(RESTORE_SERVER_ROWS, [
    ["any live state", "failure, or no row", "failed", RESTORE_SERVER_FAILURE_RULE],
  ]);
}
