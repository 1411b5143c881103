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

import {
  type PartMessage,
  RUN_LINES_OFFER,
  type SessionMessage,
  SessionProtocolError,
} from "../../core/backup/protocol.ts";
import {
  type BackupServerAction,
  type BackupServerEvent,
  BackupServerMachine,
} from "../../core/session/backup_server_machine.ts";
import { SessionPump, type Unstamped } from "../hosts/_session_pump.ts";
import type { ManifestHead } from "../../core/backup/manifest_stream.ts";
import {
  chooseParent,
  initRepository,
  repoPaths,
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
  type ErrorChannelWatch,
  errorText,
  peerProgress,
  watchErrorChannel,
} from "../hosts/peer_reports.ts";
import { LineStreamReceiver, LineStreamSender } from "../hosts/_line_stream.ts";
import { MANIFEST_LINE_CHARS_MAX } from "../repository/_manifest_file.ts";
import { RepositoryError } from "../errors.ts";
import { vouchingRecord } from "../repository/_checked_record.ts";
import {
  commitReceived,
  type CommittedManifest,
  type ReceivedManifest,
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
  /**
   * Offer run lines when the parent's file allows (default true); false behaves as a server
   * older than run lines (tests, and measuring what runs save).
   */
  readonly offerRunLines?: boolean;
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
 * Runs the server side of a backup over an established session: the pump of the backup server
 * machine (`src/core/session/backup_server_machine.ts`). It feeds the machine what happens (the
 * client's control messages, frames heard, the snapshot opened, the parent sent, the end of the
 * data, the manifest written, the commit, ticks of its own timer, failures), each stamped with
 * its clock, and carries the machine's actions out; which message is acceptable when, when to
 * commit, the grace wait for the client's report, when to send a keepalive and when to give up
 * on a silent client are the machine's rows, not decided here.
 *
 * @param session the channels (the pump takes over their keepalives)
 * @param options the repository and lock wait
 * @returns the committed manifest's head and counts, and the client's skipped entries
 * @throws on any failure, after aborting the snapshot and telling the client
 */
export async function runBackupServer(
  session: Session,
  options: BackupServerOptions,
): Promise<BackupServerResult> {
  return await new BackupServerPump(session, options).run();
}

type Posted = Unstamped<BackupServerEvent>;
type HelloMessage = Extract<SessionMessage, { type: "hello" }>;
type ProgressMessage = Extract<SessionMessage, { type: "progress" }>;

/** The pump of one backup server session: the runner's side of each action. */
class BackupServerPump {
  readonly #pump: SessionPump<BackupServerEvent, BackupServerAction>;
  readonly #machine: BackupServerMachine;
  readonly #skipped: Array<{ path: string; reason: string }> = [];
  readonly #clientFailure: ErrorChannelWatch;
  #hello: HelloMessage | undefined;
  #fullReason: string | null = null;
  #writer: SnapshotWriter | undefined;
  #streams: ServerStreams | undefined;
  #received: ReceivedManifest | undefined;
  #committed: CommittedManifest | undefined;
  /** The write in flight on the snapshot (abort waits for it). */
  #archiveWrite: Promise<void> | undefined;
  #aborted = false;
  /** The machine said the client sends nothing more on the control channel. */
  #controlRead = false;
  #outcome: { result: BackupServerResult } | { error: Error } | undefined;

  constructor(readonly session: Session, readonly options: BackupServerOptions) {
    this.#clientFailure = watchErrorChannel(session, (entry) => this.#skipped.push(entry));
    this.#pump = new SessionPump(session);
    this.#machine = new BackupServerMachine(this.#pump.times, performance.now());
  }

  async run(): Promise<BackupServerResult> {
    this.#pump.readControl(() => this.#controlRead, (message) => {
      if ((message as SessionMessage).type === "hello") this.#hello ??= message as HelloMessage;
    });
    await this.#pump.run(this.#machine, (action, event) => this.#do(action, event));
    const outcome = this.#outcome!;
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  /** Runs a step of the runner's in the background; its end is posted as an event. */
  #background<T>(work: Promise<T>, then: (value: T) => Posted): void {
    this.#pump.background(work, then);
  }

  #postFailure(error: unknown, type?: "commit-failed"): void {
    this.#pump.postFailure(error, type);
  }

  async #do(action: BackupServerAction, event: Posted): Promise<void> {
    const message = event.type === "message" ? event.message as SessionMessage : undefined;
    switch (action.type) {
      case "open":
        this.#background(this.#open(), (opened) => ({ type: "opened", ...opened }));
        return;
      case "send-begin":
        await this.#send("control", {
          type: "begin",
          snapshotId: action.snapshotId,
          hasParent: action.hasParent,
        });
        return;
      case "offer-run-lines":
        await this.#send("control", RUN_LINES_OFFER);
        return;
      case "stream-parent":
        this.#background(this.#sendParent(), () => ({ type: "parent-sent" }));
        return;
      case "receive":
        this.#receive(action.runLines);
        return;
      case "grant-parent":
        this.#streams!.parent.grant(action.upTo);
        return;
      case "take-manifest-part":
        try {
          this.#streams!.manifest.push(message as PartMessage);
        } catch (error) {
          this.#postFailure(error);
        }
        return;
      case "stop-reading":
        this.#controlRead = true;
        return;
      case "report-progress":
        this.options.onProgress?.(peerProgress(message as ProgressMessage, this.session));
        return;
      case "commit":
        this.#commit();
        return;
      default:
        await this.#doEnding(action);
    }
  }

  /** The actions that keep the session alive or end it. */
  async #doEnding(action: BackupServerAction): Promise<void> {
    switch (action.type) {
      case "send-committed":
        // Past the commit point the snapshot is in the repository whatever becomes of the
        // session: a channel that breaks now does not make it a failure.
        await this.session.sendMessage("control", {
          type: "committed",
          snapshotId: action.snapshotId,
        }).catch(() => {});
        return;
      case "send-keepalive":
        this.session.sendKeepalives();
        return;
      case "abort":
        await this.#abort();
        return;
      case "await-client-report":
        // The client's own report travels on the error channel and may trail the broken data
        // channel that made us fail: the row's wait, then what came (if anything).
        this.#background(
          this.#clientFailure.reasonWithin(action.waitMs),
          (reason) => ({ type: "client-report", reason }),
        );
        return;
      case "send-failed":
        await this.session.sendMessage("error", {
          type: "failed",
          message: errorText(this.#pump.failure),
        }).catch(() => {});
        return;
      case "done":
        this.#outcome = {
          result: {
            manifest: this.#committed!,
            fullReason: this.#fullReason,
            skipped: this.#skipped,
            receivedFrames: { ...this.session.receivedFrames },
          },
        };
        return;
      case "failed":
        this.#outcome = { error: this.#pump.failedWith("client", action.clientReason) };
        return;
    }
  }

  /** Sends a control message; a failure to is an event. */
  async #send(channel: "control" | "error", body: unknown): Promise<void> {
    // Not awaited: the loop that takes the event is the one running this.
    await this.session.sendMessage(channel, body).catch((error) => this.#postFailure(error));
  }

  /** Opens the snapshot (the repository lock) and chooses its parent. */
  async #open(): Promise<{ snapshotId: string; hasParent: boolean; parentHasLines: boolean }> {
    const hello = this.#hello!;
    const repo = await initRepository(this.options.repo);
    const writer = await beginSnapshot(repo, {
      lockWaitMs: this.options.lockWaitMs,
      signal: this.options.signal,
      onStep: this.options.onWriterStep,
    });
    if (this.#aborted) {
      await writer.abort(); // the session failed while the lock was awaited
      throw new SessionProtocolError("the session failed while the snapshot opened");
    }
    this.#writer = writer;
    this.#streams = new ServerStreams(this.session);
    const choice = await chooseParent(repo, hello.sourceId, hello.mode, hello.incremental);
    this.#fullReason = choice.fullReason;
    this.#parent = choice;
    return {
      snapshotId: writer.id,
      hasParent: choice.parent !== null,
      parentHasLines: choice.parent !== null && choice.lineLayout === true &&
        this.options.offerRunLines !== false,
    };
  }

  #parent: Awaited<ReturnType<typeof chooseParent>> | undefined;

  async #sendParent(): Promise<void> {
    const { parent, lineLayout } = this.#parent!;
    const repo = await initRepository(this.options.repo);
    await sendParent(repo, parent!, this.#streams!.parent, lineLayout === true);
  }

  /**
   * Starts taking the archive's bytes and the manifest's lines; with `runLines`, run lines are
   * copied from the parent's manifest file (held under the snapshot's lock since it was chosen).
   */
  #receive(runLines: boolean): void {
    const writer = this.#writer!;
    const parent = this.#parent?.parent;
    const runsFrom = runLines && parent
      ? {
        manifestPath: repoPaths.manifest(writer.repo, parent.id),
        vouchingRecord: () => vouchingRecord(writer.repo, parent.id),
      }
      : undefined;
    this.#background(
      receiveManifestLines(writer, this.#streams!.manifest.lines(), runsFrom),
      (received) => {
        this.#received = received;
        return { type: "manifest-written" };
      },
    );
    this.#background(this.#receiveArchive(writer), () => ({ type: "data-end" }));
  }

  /** Writes the archive's chunks as they arrive, until the end of data. */
  async #receiveArchive(writer: SnapshotWriter): Promise<void> {
    const session = this.session;
    // On storage each frame is a view of the ring, written to the archive from there; its
    // CRC-32 is checked when it is released, after the write and before the commit.
    session.lendData();
    // Bounded by the client: each turn writes one chunk; the end of data ends the loop.
    for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
      if (this.#aborted) return;
      this.#archiveWrite = writer.write(chunk);
      await this.#archiveWrite;
      session.releaseData(chunk); // back to the ring (or its memory receives a later frame)
    }
  }

  #commit(): void {
    const committing = commitReceived(this.#writer!, this.#received!, { ...this.session.bytes });
    committing.then(
      (committed) => {
        this.#committed = committed;
        return this.#pump.post({ type: "committed", snapshotId: committed.id });
      },
      (error) => this.#postFailure(error, "commit-failed"),
    );
  }

  async #abort(): Promise<void> {
    this.#aborted = true;
    this.#streams?.fail(this.#pump.failure ?? new Error("aborted"));
    await this.#archiveWrite?.catch(() => {});
    const writer = this.#writer;
    await writer?.abort();
    if (writer !== undefined) await Deno.remove(writer.manifestTempPath).catch(() => {});
  }
}

/** The server's line streams after `begin`: the parent it sends, the manifest it receives. */
class ServerStreams {
  readonly parent: LineStreamSender;
  readonly manifest: LineStreamReceiver;

  constructor(readonly session: Session) {
    this.parent = new LineStreamSender(session, "parent");
    this.manifest = new LineStreamReceiver(session, "manifest", MANIFEST_LINE_CHARS_MAX);
  }

  fail(error: Error): void {
    this.parent.fail(error);
    this.manifest.fail(error);
  }
}

/**
 * Sends the parent as lines: its head, then its entries in path order, as the file has them
 * (a checked parent's entries in blocks of lines, the file read 256 KiB at a time).
 */
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
    // Blocks of whole entry lines, unparsed: the receiver splits them as it would single lines.
    entryBlock: async (lines) => {
      await sender.line(lines);
    },
  }, checkedInOrder); // checked by chooseParent moments ago (or its record), under the same lock
  if (!headSent) throw new RepositoryError("corrupt", `manifest of ${parent.id} has no head`);
  await sender.end();
}
