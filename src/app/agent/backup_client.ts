/**
 * The backup client: runs on the host that owns the data. Over an established session it says
 * what it backs up, receives the snapshot id and the parent manifest, packs the changed entries
 * straight into the data channel, reports unreadable entries on the error channel, and sends
 * the manifest for the server to commit. It never touches the repository.
 *
 * @module
 */

import { parseSessionMessage, SessionProtocolError } from "../../core/backup/protocol.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import type { Session } from "../hosts/session.ts";
import {
  type ArchiveChannel,
  type ParentStream,
  type PreparedSnapshot,
  prepareSnapshot,
  sourceIdentity,
} from "./snapshot_source.ts";
import type { SkippedEntry, WalkedTree } from "./tree_walk.ts";
import { archiveBytesEstimate, type ChunkSink, type FrameSink } from "./tar_pack.ts";
import { LineStreamReceiver, LineStreamSender } from "../hosts/_line_stream.ts";
import { MANIFEST_LINE_CHARS_MAX } from "../repository/_manifest_file.ts";

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
  readonly walked?: Promise<WalkedTree>;
}

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

/** What the client did. */
export interface BackupClientResult {
  readonly snapshotId: string;
  readonly files: number;
  readonly fileBytes: number;
  readonly skipped: SkippedEntry[];
  /** Archive frames sent: written in place in the storage ring, or copied from a buffer. */
  readonly dataFrames: { readonly inPlace: number; readonly copied: number };
}

/** Reads control messages until one of `type` arrives, skipping none (order is fixed). */
async function expect<T extends "begin">(session: Session, type: T) {
  return parseSessionMessage(await session.nextMessage("control"), type);
}

/**
 * The client's side of the control channel after `begin`: the parent stream's parts, credit
 * for the manifest stream, and the final `committed`.
 */
class ClientStreams {
  readonly parent: LineStreamReceiver;
  readonly manifest: LineStreamSender;
  #committed: (snapshotId: string) => void = () => {};
  #notCommitted: (error: Error) => void = () => {};
  /** The server's `committed`; rejected when the control channel fails before it. */
  readonly committed: Promise<string>;

  constructor(readonly session: Session) {
    this.parent = new LineStreamReceiver(session, "parent", MANIFEST_LINE_CHARS_MAX);
    this.manifest = new LineStreamSender(session, "manifest");
    this.committed = new Promise((resolve, reject) => {
      this.#committed = resolve;
      this.#notCommitted = reject;
    });
    this.committed.catch(() => {}); // awaited by the backup; a failure before that is its error
  }

  /** Reads control messages until `committed`. */
  async pump(): Promise<void> {
    try {
      // Bounded: the parts by PARTS_MAX, credit by the manifest's parts, and `committed` ends it.
      for (;;) {
        const message = parseSessionMessage(await this.session.nextMessage("control"));
        if (message.type === "part" && message.of === "parent") this.parent.push(message);
        else if (message.type === "more" && message.of === "manifest") {
          this.manifest.grant(message.upTo);
        } else if (message.type === "committed") {
          this.#committed(message.snapshotId);
          return;
        } else throw new SessionProtocolError(`unexpected ${message.type} message`);
      }
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.parent.fail(failure);
      this.manifest.fail(failure);
      this.#notCommitted(failure); // else a client that sent everything waits for it forever
      throw error;
    }
  }
}

/** The parent as the server streams it: its head line, then an entry per line. */
async function receiveParent(streams: ClientStreams): Promise<ParentStream> {
  const lines = streams.parent.lines();
  const first = await lines.next();
  if (first.done) throw new SessionProtocolError("the parent stream is empty");
  async function* entries(): AsyncGenerator<unknown> {
    for await (const line of lines) yield JSON.parse(line);
  }
  return { head: JSON.parse(first.value), entries: entries() };
}

/**
 * Runs the client side of a backup over an established session.
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
  const serverFailure = watchErrorChannel(session);
  try {
    const sourceId = await sourceIdentity(options.source);
    await session.sendMessage("control", {
      type: "hello",
      mode: options.mode,
      source: options.source,
      sourceId,
      incremental: options.incremental,
    });
    const begin = await expect(session, "begin");
    const streams = new ClientStreams(session);
    const pump = streams.pump();
    pump.catch(() => {}); // its failure reaches the streams, which the steps below await
    const prepared = await prepareSnapshot({
      mode: options.mode,
      source: options.source,
      sourceId,
      snapshotId: begin.snapshotId,
      parent: null,
      parentStream: begin.hasParent ? await receiveParent(streams) : undefined,
      hashWorker: options.hashWorker,
      walked: options.mode === "fs" ? options.walked : undefined,
    });
    try {
      return await packAndSend(session, streams, prepared, options, begin.snapshotId);
    } finally {
      await prepared.close();
    }
  } catch (error) {
    const reason = serverFailure.reason();
    await session.sendMessage("error", { type: "failed", message: errorText(error) }).catch(
      () => {},
    );
    if (reason !== undefined) throw new PeerFailedError("server", reason);
    throw error;
  }
}

async function packAndSend(
  session: Session,
  streams: ClientStreams,
  prepared: PreparedSnapshot,
  options: BackupClientOptions,
  snapshotId: string,
): Promise<BackupClientResult> {
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
  const files = prepared.plan.changed;
  // Archive bytes, like `bytes`: the bar's total is known before it starts.
  const totalBytes = archiveBytesEstimate(prepared.table);
  let bytes = 0;
  let lastProgressMs = 0;
  const everyMs = options.progressEveryMs ?? 250;
  const sent = async (count: number) => {
    bytes += count;
    const nowMs = performance.now();
    if (nowMs - lastProgressMs >= everyMs) {
      lastProgressMs = nowMs;
      const { storage, network } = session.bytes;
      options.onProgress?.({
        files,
        bytes,
        totalBytes,
        storageBytes: storage,
        networkBytes: network,
      });
      await session.sendMessage("control", { type: "progress", files, bytes, totalBytes });
    }
  };
  // On storage the archive is packed straight into the send ring (no copy into it).
  const sink: ChunkSink | FrameSink = session.dataInPlace
    ? {
      reserve: (maxBytes) => session.reserveData(maxBytes),
      commit: async (count) => {
        await session.commitData(count);
        if (count > 0) await sent(count);
      },
    }
    : async (chunk) => {
      await session.sendData(chunk);
      await sent(chunk.length);
    };
  const packed = await prepared.pack(sink, options.dataChannel);
  await session.endData();
  await reportSkipped(packed.skipped);
  for (const line of packed.lines()) await streams.manifest.line(line);
  await streams.manifest.end();
  const committed = await streams.committed;
  if (committed !== snapshotId) {
    throw new SessionProtocolError(`server committed ${committed}, not ${snapshotId}`);
  }
  return {
    snapshotId,
    files: packed.files,
    fileBytes: packed.fileBytes,
    skipped: packed.skipped,
    dataFrames: { ...session.dataFrames },
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

/** The message of any thrown value. */
export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
}
