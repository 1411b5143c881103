/**
 * The backup server: writes the repository (the seeds' tape library). Over an established
 * session it opens a snapshot (taking the repository lock), sends the parent manifest for an
 * incremental backup, writes the archive bytes as they arrive on the data channel, collects the
 * client's reports, and commits the manifest with the bytes that went through each channel. On
 * any failure it aborts: the repository stays exactly as it was.
 *
 * @module
 */

import { GRACE_ROWS } from "../../core/session/grace.ts";
import { parseSessionMessage, PartJoiner, splitIntoParts } from "../../core/backup/protocol.ts";
import type { Manifest } from "../../core/backup/manifest.ts";
import { chooseParent, initRepository } from "../repository/repository.ts";
import type { Session } from "../hosts/session.ts";
import { beginSnapshot, type WriterStep } from "../repository/snapshot_writer.ts";
import {
  type BackupProgress,
  errorText,
  PeerFailedError,
  watchErrorChannel,
} from "../agent/backup_client.ts";

/** Where the server writes. */
export interface BackupServerOptions {
  readonly repo: string;
  /** How long to wait for another backup's repository lock. */
  readonly lockWaitMs?: number;
  /** Called with the client's progress reports. */
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Stops waiting for the repository lock (the job was cancelled). */
  readonly signal?: AbortSignal;
  /** Drill hook: awaited at every step of the snapshot's commit protocol. */
  readonly onWriterStep?: (step: WriterStep) => Promise<void> | void;
}

/** What the server committed. */
export interface BackupServerResult {
  readonly manifest: Manifest;
  /** Why an incremental backup that was asked for is full (see `chooseParent`), else null. */
  readonly fullReason: string | null;
  /** Entries the client reported unreadable. */
  readonly skipped: Array<{ path: string; reason: string }>;
}

/**
 * Runs the server side of a backup over an established session.
 *
 * @param session the channels
 * @param options the repository and lock wait
 * @returns the committed manifest and the client's skipped entries
 * @throws on any failure, after aborting the snapshot and telling the client
 */
export async function runBackupServer(
  session: Session,
  options: BackupServerOptions,
): Promise<BackupServerResult> {
  const skipped: Array<{ path: string; reason: string }> = [];
  const clientFailure = watchErrorChannel(session, (entry) => skipped.push(entry));
  let writer: Awaited<ReturnType<typeof beginSnapshot>> | undefined;
  try {
    const hello = parseSessionMessage(await session.nextMessage("control"), "hello");
    const repo = await initRepository(options.repo);
    writer = await beginSnapshot(repo, {
      lockWaitMs: options.lockWaitMs,
      signal: options.signal,
      onStep: options.onWriterStep,
    });
    const { parent, fullReason } = await chooseParent(
      repo,
      hello.sourceId,
      hello.mode,
      hello.incremental,
    );
    await session.sendMessage("control", {
      type: "begin",
      snapshotId: writer.id,
      hasParent: parent !== null,
    });
    if (parent !== null) {
      for (const part of splitIntoParts("parent", parent)) {
        await session.sendMessage("control", part);
      }
    }
    const manifestText = receiveManifest(session, options.onProgress);
    manifestText.catch(() => {}); // awaited below; a data failure must not leave it unhandled
    // Bounded by the client: each turn writes one chunk; the end of data ends the loop.
    for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
      await writer.write(chunk);
      session.releaseData(chunk); // its memory receives a later frame
    }
    const manifest = await manifestText;
    const withCounters = {
      ...(manifest as Record<string, unknown>),
      channelBytes: { ...session.bytes },
    };
    const committed = await writer.commit(withCounters);
    // Past the commit point the snapshot stands: a client that cannot be told (its channel
    // broke) fails its own side, but this side reports what the repository holds.
    await session.sendMessage("control", { type: "committed", snapshotId: committed.id })
      .catch(() => {});
    return { manifest: committed, fullReason, skipped };
  } catch (error) {
    await writer?.abort();
    // The client's own report travels on the error channel and may trail the broken data
    // channel that made us fail: wait a little for it, it says why.
    const reason = await clientFailure.reasonWithin(CLIENT_REPORT_WAIT_MS);
    await session.sendMessage("error", { type: "failed", message: errorText(error) }).catch(
      () => {},
    );
    if (reason !== undefined) throw new PeerFailedError("client", reason);
    throw error;
  }
}

/** Reads control messages during the transfer: progress reports, then the manifest's parts. */
async function receiveManifest(
  session: Session,
  onProgress: BackupServerOptions["onProgress"],
): Promise<unknown> {
  const joiner = new PartJoiner("manifest");
  // Bounded: progress is throttled by the client and the parts by PARTS_MAX.
  while (!joiner.done) {
    const message = parseSessionMessage(await session.nextMessage("control"));
    if (message.type === "progress") onProgress?.(message);
    else if (message.type === "part") joiner.add(message);
    else throw new Error(`unexpected ${message.type} message while receiving the archive`);
  }
  return joiner.value();
}

/** How long a failing server waits for the client's `failed` report (see the row's rule). */
const CLIENT_REPORT_WAIT_MS = GRACE_ROWS.clientReportWait.waitMs;
