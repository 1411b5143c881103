/**
 * The backup client: runs on the host that owns the data. Over an established session it says
 * what it backs up, receives the snapshot id and the parent manifest, packs the changed entries
 * straight into the data channel, reports unreadable entries on the error channel, and sends
 * the manifest for the server to commit. It never touches the repository.
 *
 * @module
 */

import {
  type PartMessage,
  type SessionMessage,
  SessionProtocolError,
} from "../../core/backup/protocol.ts";
import {
  type BackupClientAction,
  type BackupClientEvent,
  BackupClientMachine,
} from "../../core/session/backup_client_machine.ts";
import { SessionPump, type Unstamped } from "../hosts/_session_pump.ts";
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
import { type BackupProgress, errorText, watchErrorChannel } from "../hosts/peer_reports.ts";

export {
  type BackupProgress,
  type ErrorChannelWatch,
  errorOrigin,
  errorText,
  PeerFailedError,
  peerProgress,
  watchErrorChannel,
} from "../hosts/peer_reports.ts";

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
  /**
   * Send run lines where the server offers them (default true); false sends plain lines as a
   * client older than run lines does (tests, and measuring what runs save).
   */
  readonly runLines?: boolean;
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

/** The client's line streams after `begin`: the parent it receives, the manifest it sends. */
class ClientStreams {
  readonly parent: LineStreamReceiver;
  readonly manifest: LineStreamSender;

  constructor(readonly session: Session) {
    this.parent = new LineStreamReceiver(session, "parent", MANIFEST_LINE_CHARS_MAX);
    this.manifest = new LineStreamSender(session, "manifest");
  }

  fail(error: Error): void {
    this.parent.fail(error);
    this.manifest.fail(error);
  }
}

/**
 * The parent as the server streams it: its head line, then an entry per line (handed over as
 * lines, so the plan can tell which new lines are the parent's, for run lines).
 */
async function receiveParent(streams: ClientStreams): Promise<ParentStream> {
  const lines = streams.parent.lines();
  const first = await lines.next();
  if (first.done) throw new SessionProtocolError("the parent stream is empty");
  return { head: JSON.parse(first.value), entryLines: lines };
}

/**
 * Runs the client side of a backup over an established session: the pump of the backup client
 * machine (`src/core/session/backup_client_machine.ts`). It feeds the machine what happens (the
 * source identified, the server's control messages, frames heard, the snapshot prepared, the
 * archive and manifest sent, the server's `failed` report, ticks of its own timer, failures),
 * each stamped with its clock, and carries the actions out; which message is acceptable when,
 * when to send a keepalive and when to give up on a silent server are the machine's rows.
 *
 * @param session the channels (control and error on the network, or all on storage; the pump
 *   takes over their keepalives)
 * @param options source, mode, incremental flag, data channel kind
 * @returns the snapshot id, counts and skipped entries
 * @throws when the source cannot be read, the server fails (its message is in the error), or
 *   the channels break
 */
export async function runBackupClient(
  session: Session,
  options: BackupClientOptions,
): Promise<BackupClientResult> {
  return await new BackupClientPump(session, options).run();
}

type ClientPosted = Unstamped<BackupClientEvent>;
type PackedResult = Omit<BackupClientResult, "snapshotId">;

/** The pump of one backup client session: the runner's side of each action. */
class BackupClientPump {
  readonly #pump: SessionPump<BackupClientEvent, BackupClientAction>;
  readonly #machine: BackupClientMachine;
  #sourceId = "";
  #streams: ClientStreams | undefined;
  #prepared: PreparedSnapshot | undefined;
  /** The pack in flight: it closes the prepared snapshot when it ends. */
  #packing: Promise<PackedResult> | undefined;
  #packed: PackedResult | undefined;
  /** The prepared snapshot closed, once the pack ended. */
  #closed: Promise<void> | undefined;
  #aborted = false;
  #outcome: { result: BackupClientResult } | { error: Error } | undefined;

  constructor(readonly session: Session, readonly options: BackupClientOptions) {
    this.#pump = new SessionPump(session);
    this.#machine = new BackupClientMachine(this.#pump.times, performance.now());
    watchErrorChannel(session, undefined, (reason) => {
      this.#pump.post({ type: "server-report", reason });
    });
  }

  async run(): Promise<BackupClientResult> {
    this.#pump.readControl(() => false);
    this.#background(sourceIdentity(this.options.source), (sourceId) => {
      this.#sourceId = sourceId;
      return { type: "identified", sourceId };
    });
    await this.#pump.run(this.#machine, (action, event) => this.#do(action, event));
    const outcome = this.#outcome!;
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  #background<T>(work: Promise<T>, then: (value: T) => ClientPosted): void {
    this.#pump.background(work, then);
  }

  async #do(action: BackupClientAction, event: ClientPosted): Promise<void> {
    const message = event.type === "message" ? event.message as SessionMessage : undefined;
    switch (action.type) {
      case "send-hello":
        await this.session.sendMessage("control", {
          type: "hello",
          mode: this.options.mode,
          source: this.options.source,
          sourceId: action.sourceId,
          incremental: this.options.incremental,
        }).catch((error) => this.#pump.postFailure(error));
        return;
      case "prepare":
        this.#streams = new ClientStreams(this.session);
        this.#background(this.#prepare(action.snapshotId, action.hasParent), () => ({
          type: "prepared",
        }));
        return;
      case "take-parent-part":
        try {
          this.#streams!.parent.push(message as PartMessage);
        } catch (error) {
          this.#pump.postFailure(error);
        }
        return;
      case "grant-manifest":
        this.#streams!.manifest.grant(action.upTo);
        return;
      case "pack-and-send":
        {
          const prepared = this.#prepared!;
          const runLines = action.runLines && this.options.runLines !== false;
          this.#packing = packAndSend(this.session, this.#streams!, prepared, {
            ...this.options,
            runLines,
          });
          // `sent` is posted in the microtasks that follow the manifest's last part, before any
          // I/O: the server's `committed` (which needs that part) cannot overtake it. Closing
          // the snapshot (a worker to stop) must not come in between; the end awaits it.
          this.#background(this.#packing, (packed) => {
            this.#packed = packed;
            return { type: "sent" };
          });
          this.#closed = this.#packing.then(() => prepared.close(), () => prepared.close());
        }
        return;
      case "send-keepalive":
        this.session.sendKeepalives();
        return;
      default:
        await this.#doEnding(action);
    }
  }

  /** The actions that end the session. */
  async #doEnding(action: BackupClientAction): Promise<void> {
    switch (action.type) {
      case "abort":
        this.#aborted = true;
        this.#streams?.fail(this.#pump.failure ?? new Error("aborted"));
        // A pack in flight closes the snapshot when it ends (its next send fails once the
        // caller closes the descriptors); one prepared and not packing is closed here.
        if (this.#packing === undefined) await this.#prepared?.close();
        return;
      case "send-failed":
        await this.session.sendMessage("error", {
          type: "failed",
          message: errorText(this.#pump.failure),
        }).catch(() => {});
        return;
      case "done":
        await this.#closed;
        this.#outcome = { result: { snapshotId: action.snapshotId, ...this.#packed! } };
        return;
      case "failed":
        this.#outcome = { error: this.#pump.failedWith("server", action.serverReason) };
        return;
    }
  }

  async #prepare(snapshotId: string, hasParent: boolean): Promise<void> {
    const { options } = this;
    const prepared = await prepareSnapshot({
      mode: options.mode,
      source: options.source,
      sourceId: this.#sourceId,
      snapshotId,
      parent: null,
      parentStream: hasParent ? await receiveParent(this.#streams!) : undefined,
      hashWorker: options.hashWorker,
      walked: options.mode === "fs" ? options.walked : undefined,
    });
    if (this.#aborted) {
      await prepared.close(); // the session failed while the snapshot was prepared
      throw new SessionProtocolError("the session failed while the snapshot was prepared");
    }
    this.#prepared = prepared;
  }
}

async function packAndSend(
  session: Session,
  streams: ClientStreams,
  prepared: PreparedSnapshot,
  options: BackupClientOptions,
): Promise<Omit<BackupClientResult, "snapshotId">> {
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
  for (const line of packed.lines(options.runLines)) await streams.manifest.line(line);
  await streams.manifest.end();
  return {
    files: packed.files,
    fileBytes: packed.fileBytes,
    skipped: packed.skipped,
    dataFrames: { ...session.dataFrames },
  };
}
