/**
 * What either side of a session reports about itself and its peer, shared by the client, the
 * server and their hosts: progress, a failure caused by the peer's, where a failure came from,
 * the error channel's watch, and an error's text. Kept apart from the backup client so a server
 * host does not load the client's packer, walk and database snapshot to name them.
 *
 * @module
 */

import { parseSessionMessage } from "../../core/backup/protocol.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import type { Session } from "./session.ts";

/** How far a backup got: files planned, archive bytes sent, archive bytes expected. */
export interface BackupProgress {
  /** Files planned so far. */
  readonly files: number;
  /** Archive bytes sent so far. */
  readonly bytes: number;
  /** File bytes planned (what `bytes` grows toward, headers aside). */
  readonly totalBytes: number;
  /** Bytes the session moved through the storage region so far (data and messages). */
  readonly storageBytes?: number;
  /** Bytes the session moved over the network so far. */
  readonly networkBytes?: number;
}

/**
 * A peer's progress report as this side passes it on: the peer's counts (files, bytes, total
 * bytes) with this side's bytes per channel, which are the same session's traffic. The wire's
 * `progress` message carries no channel counts, so a job run toward an agent still shows its
 * storage and network bytes (and its throughput chart) live.
 *
 * @param reported the peer's `progress` message
 * @param session this side's session (its bytes so far)
 * @returns the progress to report
 */
export function peerProgress(
  reported: { readonly files: number; readonly bytes: number; readonly totalBytes: number },
  session: { readonly bytes: Readonly<{ storage: number; network: number }> },
): BackupProgress {
  const { storage, network } = session.bytes;
  return {
    files: reported.files,
    bytes: reported.bytes,
    totalBytes: reported.totalBytes,
    storageBytes: storage,
    networkBytes: network,
  };
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
 * remembers the peer's `failed` message (and passes it to `onFailed`). Both sides of a backup
 * use it.
 */
export function watchErrorChannel(
  session: Session,
  onSkipped: (entry: { path: string; reason: string }) => void = () => {},
  onFailed: (reason: string) => void = () => {},
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
        onFailed(reason);
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

/** The message of any thrown value. */
export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
}
