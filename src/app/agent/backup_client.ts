/**
 * The backup client: runs on the host that owns the data. Over an established session it says
 * what it backs up, receives the snapshot id and the parent manifest, packs the changed entries
 * straight into the data channel, reports unreadable entries on the error channel, and sends
 * the manifest for the server to commit. It never touches the repository. The protocol's
 * decisions are the pure machine's (`src/core/session/backup_client.ts`); this module is its pump.
 *
 * @module
 */

import { parseSessionMessage } from "../../core/backup/protocol.ts";
import { errorText } from "../../core/session/failed.ts";
import {
  type BackupClientAction,
  type BackupClientInput,
  BackupClientMachine,
} from "../../core/session/backup_client.ts";
import type { Session } from "../hosts/session.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import {
  type ArchiveChannel,
  type PreparedSnapshot,
  prepareSnapshot,
  sourceIdentity,
} from "./snapshot_source.ts";
import type { SkippedEntry, WalkResult } from "./tree_walk.ts";
import { archiveBytesEstimate } from "./tar_pack.ts";

/** What the client backs up. */
export interface BackupClientOptions {
  readonly mode: "fs" | "db";
  /** The directory (fs) or the SQLite database file (db). */
  readonly source: string;
  readonly incremental: boolean;
  /** Which kind of channel carries the data (recorded in the manifest's counters). */
  readonly dataChannel: Exclude<ArchiveChannel, "none">;
  /** Called with packing progress, at most every `progressEveryMs`. */
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly progressEveryMs?: number;
  /** A port to a hash worker the caller started (see `PackOptions.hashWorker`). */
  readonly hashWorker?: () => Promise<MessagePort>;
  /** A walk of the source (fs mode) started while the channels were set up. */
  readonly walked?: Promise<WalkResult>;
}

/** How far a backup got: files planned, archive bytes sent, archive bytes expected. */
export interface BackupProgress {
  /** Files planned so far. */
  readonly files: number;
  /** Archive bytes sent so far. */
  readonly bytes: number;
  /** File bytes planned (what `bytes` grows toward, headers aside). */
  readonly totalBytes: number;
}

/** What the client did. */
export interface BackupClientResult {
  readonly snapshotId: string;
  readonly files: number;
  readonly fileBytes: number;
  readonly skipped: SkippedEntry[];
}

/**
 * Runs the client side of a backup over an established session: a pump over the pure machine
 * (`src/core/session/backup_client.ts`, whose table holds the protocol's decisions). It performs
 * what the machine asks (name the source, send, read, prepare, pack) and feeds each result back.
 *
 * @param session the channels (control and error on the network, or all on storage)
 * @param options source, mode, incremental flag, data channel kind
 * @returns the snapshot id, counts and skipped entries
 * @throws when the source cannot be read, the server fails (its message is in the error), or
 *   the channels break
 */
export async function runBackupClient(
  session: Session,
  options: BackupClientOptions,
): Promise<BackupClientResult> {
  const pump = new ClientPump(session, options);
  try {
    const outcome = await pump.run();
    if (outcome.type === "done") return pump.result!;
    if (outcome.serverReason !== undefined) {
      throw new PeerFailedError("server", outcome.serverReason);
    }
    throw outcome.error;
  } finally {
    await pump.prepared?.close();
  }
}

type ClientOutcome = Extract<BackupClientAction, { type: "done" | "failed" }>;

/** Performs the client machine's actions over a session and the source. */
class ClientPump {
  readonly machine: BackupClientMachine;
  readonly #serverFailure: ErrorChannelWatch;
  #end: (outcome: ClientOutcome) => void = () => {};
  prepared: Awaited<ReturnType<typeof prepareSnapshot>> | undefined;
  result: BackupClientResult | undefined;

  constructor(readonly session: Session, readonly options: BackupClientOptions) {
    this.machine = new BackupClientMachine(options);
    this.#serverFailure = watchErrorChannel(session);
  }

  /** Runs to the machine's end. */
  run(): Promise<ClientOutcome> {
    const ended = new Promise<ClientOutcome>((resolve) => (this.#end = resolve));
    void this.#performAll(this.machine.start());
    return ended;
  }

  async #drive(input: BackupClientInput): Promise<void> {
    await this.#performAll(this.machine.handle(input));
  }

  /** Performs actions in order; each result is handled at once. */
  async #performAll(actions: readonly BackupClientAction[]): Promise<void> {
    for (const action of actions) {
      let result: BackupClientInput | undefined;
      try {
        result = await this.#perform(action);
      } catch (error) {
        return await this.#drive({ type: "failure", error });
      }
      if (result !== undefined) await this.#drive(result);
    }
  }

  async #perform(action: BackupClientAction): Promise<BackupClientInput | undefined> {
    switch (action.type) {
      case "name-source":
        return { type: "named", sourceId: await sourceIdentity(this.options.source) };
      case "receive":
        return { type: "message", body: await this.session.nextMessage("control") };
      case "send":
        if (!action.bestEffort) await this.session.sendMessage(action.channel, action.body);
        else await this.session.sendMessage(action.channel, action.body).catch(() => {});
        return undefined;
      case "prepare":
        this.prepared = await prepareSnapshot({
          mode: this.options.mode,
          source: this.options.source,
          sourceId: action.sourceId,
          snapshotId: action.snapshotId,
          parent: action.parent,
          hashWorker: this.options.hashWorker,
          walked: this.options.mode === "fs" ? this.options.walked : undefined,
        });
        return { type: "prepared" };
      case "pack":
        return { type: "packed", manifest: await this.#pack(action.snapshotId) };
      case "check-server-report":
        return { type: "server-report", reason: this.#serverFailure.reason() };
      case "done":
      case "failed":
        this.#end(action);
        return undefined;
    }
  }

  /** Packs into the data channel (progress and unreadable entries on the way); the manifest. */
  async #pack(snapshotId: string): Promise<unknown> {
    const packed = await packAndSend(this.session, this.prepared!, this.options);
    this.result = {
      snapshotId,
      files: packed.files,
      fileBytes: packed.fileBytes,
      skipped: packed.skipped,
    };
    return packed.manifest;
  }
}

async function packAndSend(
  session: Session,
  prepared: Awaited<ReturnType<typeof prepareSnapshot>>,
  options: BackupClientOptions,
): Promise<Awaited<ReturnType<PreparedSnapshot["pack"]>>> {
  const reported = new Set<string>();
  const reportSkipped = async (entries: readonly SkippedEntry[]) => {
    for (const entry of entries.filter((e) => !reported.has(e.path))) {
      reported.add(entry.path);
      await session.sendMessage("error", {
        type: "skipped",
        path: entry.path,
        reason: entry.reason,
      });
    }
  };
  await reportSkipped(prepared.skipped);
  const files = prepared.plan.changed.length;
  // Archive bytes, like `bytes`: the bar's total is known before it starts.
  const totalBytes = archiveBytesEstimate(prepared.plan.changed);
  let bytes = 0;
  let lastProgressMs = 0;
  const everyMs = options.progressEveryMs ?? 250;
  const packed = await prepared.pack(async (chunk) => {
    await session.sendData(chunk);
    bytes += chunk.length;
    const nowMs = performance.now();
    if (nowMs - lastProgressMs >= everyMs) {
      lastProgressMs = nowMs;
      options.onProgress?.({ files, bytes, totalBytes });
      await session.sendMessage("control", { type: "progress", files, bytes, totalBytes });
    }
  }, options.dataChannel);
  await session.endData();
  await reportSkipped(packed.skipped);
  return packed;
}

/** This side failed because its peer did: the peer's own account is `reason`. */
export class PeerFailedError extends Error {
  constructor(readonly peer: "client" | "server", readonly reason: string) {
    super(`${peer} failed: ${reason}`);
    this.name = "PeerFailedError";
  }
}

/**
 * Where a side's failure came from: `peer` (it failed because the peer reported a failure),
 * `transport` (a socket failed, often because the peer went away), or `own` (the real cause).
 *
 * @param error what the side threw
 * @returns its origin
 */
export function errorOrigin(error: unknown): "own" | "peer" | "transport" {
  if (error instanceof PeerFailedError) return "peer";
  return error instanceof SocketError ? "transport" : "own";
}

/** What the error channel told so far: the peer's `failed` message, if any. */
export interface ErrorChannelWatch {
  /** The peer's failure message, if it has arrived. */
  reason(): string | undefined;
  /** Waits up to `waitMs` for the peer's failure message (or the channel's end). */
  reasonWithin(waitMs: number): Promise<string | undefined>;
}

/**
 * Reads the error channel in the background: passes `skipped` reports to `onSkipped` and
 * remembers the peer's `failed` message. Both sides of a backup use it.
 */
export function watchErrorChannel(
  session: Session,
  onSkipped: (entry: { path: string; reason: string }) => void = () => {},
): ErrorChannelWatch {
  let reason: string | undefined;
  let ended = () => {};
  const endedOrReported = new Promise<void>((resolve) => (ended = resolve));
  (async () => {
    // Bounded: ends when the channel ends or the peer reports a failure.
    for (let reports = 0; reports < 10_000_000; reports++) {
      const message = parseSessionMessage(await session.nextMessage("error"));
      if (message.type === "skipped") onSkipped({ path: message.path, reason: message.reason });
      else if (message.type === "failed") {
        reason = message.message;
        return;
      }
    }
  })().catch(() => {}).finally(() => ended());
  return {
    reason: () => reason,
    async reasonWithin(waitMs) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        endedOrReported,
        new Promise((resolve) => (timer = setTimeout(resolve, waitMs))),
      ]);
      clearTimeout(timer);
      return reason;
    },
  };
}

/** The message of any thrown value (cut to what a `failed` message carries). */
export { errorText };
