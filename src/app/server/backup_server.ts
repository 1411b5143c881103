/**
 * The backup server: writes the repository (the seeds' tape library). Over an established
 * session it opens a snapshot (taking the repository lock), streams the parent manifest to the
 * client for an incremental backup, writes the archive bytes as they arrive on the data channel,
 * collects the client's reports, and writes the client's manifest line by line as it arrives,
 * each entry checked (the tree rule included), then commits it with the bytes that went
 * through each channel. On any failure it aborts: the repository stays exactly as it was.
 *
 * @module
 */

import { GRACE_ROWS } from "../../core/session/grace.ts";
import { parseSessionMessage, SessionProtocolError } from "../../core/backup/protocol.ts";
import type { ManifestHead } from "../../core/backup/manifest_stream.ts";
import {
  chooseParent,
  initRepository,
  type Repository,
  streamManifest,
} from "../repository/repository.ts";
import type { Session } from "../hosts/session.ts";
import {
  beginSnapshot,
  type SnapshotWriter,
  type WriterStep,
} from "../repository/snapshot_writer.ts";
import {
  type BackupProgress,
  errorText,
  PeerFailedError,
  peerProgress,
  watchErrorChannel,
} from "../agent/backup_client.ts";
import { LineStreamReceiver, LineStreamSender } from "../hosts/_line_stream.ts";
import { MANIFEST_LINE_CHARS_MAX } from "../repository/_manifest_file.ts";
import { RepositoryError } from "../errors.ts";
import {
  commitReceived,
  type CommittedManifest,
  receiveManifestLines,
} from "../repository/_manifest_commit.ts";

export type { CommittedManifest } from "../repository/_manifest_commit.ts";

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
  readonly manifest: CommittedManifest;
  /** Why an incremental backup that was asked for is full (see `chooseParent`), else null. */
  readonly fullReason: string | null;
  /** Entries the client reported unreadable. */
  readonly skipped: Array<{ path: string; reason: string }>;
  /** The archive's data frames: written to the archive straight from the ring, or copied. */
  readonly receivedFrames: { readonly lent: number; readonly copied: number };
}

/**
 * Runs the server side of a backup over an established session.
 *
 * @param session the channels
 * @param options the repository and lock wait
 * @returns the committed manifest's head and counts, and the client's skipped entries
 * @throws on any failure, after aborting the snapshot and telling the client
 */
export async function runBackupServer(
  session: Session,
  options: BackupServerOptions,
): Promise<BackupServerResult> {
  const skipped: Array<{ path: string; reason: string }> = [];
  const clientFailure = watchErrorChannel(session, (entry) => skipped.push(entry));
  let writer: SnapshotWriter | undefined;
  let streams: ServerStreams | undefined;
  let committed: CommittedManifest;
  let fullReason: string | null;
  try {
    const hello = parseSessionMessage(await session.nextMessage("control"), "hello");
    const repo = await initRepository(options.repo);
    writer = await beginSnapshot(repo, {
      lockWaitMs: options.lockWaitMs,
      signal: options.signal,
      onStep: options.onWriterStep,
    });
    const choice = await chooseParent(
      repo,
      hello.sourceId,
      hello.mode,
      hello.incremental,
    );
    const { parent, lineLayout } = choice;
    fullReason = choice.fullReason;
    await session.sendMessage("control", {
      type: "begin",
      snapshotId: writer.id,
      hasParent: parent !== null,
    });
    streams = new ServerStreams(session, options.onProgress);
    const pump = streams.pump();
    pump.catch(() => {}); // its failure reaches the streams, which the steps below await
    if (parent !== null) await sendParent(repo, parent, streams.parent, lineLayout === true);
    const manifest = receiveManifestLines(writer, streams.manifest.lines());
    manifest.catch(() => {}); // awaited below; a data failure must not leave it unhandled
    // On storage each frame is a view of the ring, written to the archive from there; its
    // CRC-32 is checked when it is released, after the write and before the commit.
    session.lendData();
    // Bounded by the client: each turn writes one chunk; the end of data ends the loop.
    for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
      await writer.write(chunk);
      session.releaseData(chunk); // back to the ring (or its memory receives a later frame)
    }
    committed = await commitReceived(writer, await manifest, { ...session.bytes });
  } catch (error) {
    streams?.fail(error instanceof Error ? error : new Error(String(error)));
    await writer?.abort();
    if (writer !== undefined) await Deno.remove(writer.manifestTempPath).catch(() => {});
    // The client's own report travels on the error channel and may trail the broken data
    // channel that made us fail: wait a little for it, it says why.
    const reason = await clientFailure.reasonWithin(CLIENT_REPORT_WAIT_MS);
    await session.sendMessage("error", { type: "failed", message: errorText(error) }).catch(
      () => {},
    );
    if (reason !== undefined) throw new PeerFailedError("client", reason);
    throw error;
  }
  // Past the commit point the snapshot is in the repository whatever becomes of the session: a
  // channel that breaks now does not make it a failure (the client, not told, reports one).
  await session.sendMessage("control", { type: "committed", snapshotId: committed.id })
    .catch(() => {});
  return {
    manifest: committed,
    fullReason,
    skipped,
    receivedFrames: { ...session.receivedFrames },
  };
}

/**
 * The server's side of the control channel after `begin`: credit for the parent stream, the
 * client's progress, and the manifest stream's parts.
 */
class ServerStreams {
  readonly parent: LineStreamSender;
  readonly manifest: LineStreamReceiver;

  constructor(readonly session: Session, readonly onProgress: BackupServerOptions["onProgress"]) {
    this.parent = new LineStreamSender(session, "parent");
    this.manifest = new LineStreamReceiver(session, "manifest", MANIFEST_LINE_CHARS_MAX);
  }

  /** Reads control messages until the manifest's last part. */
  async pump(): Promise<void> {
    try {
      // Bounded: progress is throttled by the client and the parts by PARTS_MAX.
      while (!this.manifest.complete) {
        const message = parseSessionMessage(await this.session.nextMessage("control"));
        if (message.type === "progress") this.onProgress?.(peerProgress(message, this.session));
        else if (message.type === "more" && message.of === "parent") {
          this.parent.grant(message.upTo);
        } else if (message.type === "part" && message.of === "manifest") {
          this.manifest.push(message);
        } else {
          throw new SessionProtocolError(
            `unexpected ${message.type} message while receiving the archive`,
          );
        }
      }
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  fail(error: Error): void {
    this.parent.fail(error);
    this.manifest.fail(error);
  }
}

/** Sends the parent as lines: its head, then its entries in path order, as the file has them. */
async function sendParent(
  repo: Repository,
  parent: ManifestHead,
  sender: LineStreamSender,
  checkedInOrder: boolean,
) {
  let headSent = false;
  await streamManifest(repo, parent.id, {
    head: async (head) => {
      await sender.line(JSON.stringify(head));
      headSent = true;
    },
    entryLine: async (line) => {
      await sender.line(line);
    },
  }, checkedInOrder); // checked whole by chooseParent moments ago, under the same lock
  if (!headSent) throw new RepositoryError("corrupt", `manifest of ${parent.id} has no head`);
  await sender.end();
}

/** How long a failing server waits for the client's `failed` report (the grace row). */
const CLIENT_REPORT_WAIT_MS = GRACE_ROWS.clientReportWait.waitMs;
