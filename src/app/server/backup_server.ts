/**
 * The backup server: writes the repository (the seeds' tape library). Over an established
 * session it opens a snapshot (taking the repository lock), sends the parent manifest for an
 * incremental backup, writes the archive bytes as they arrive on the data channel, collects the
 * client's reports, and commits the manifest with the bytes that went through each channel. On
 * any failure it aborts: the repository stays exactly as it was. Every decision (what to send,
 * when to read, when to commit, how to fail) is the pure machine's,
 * `src/core/session/backup_server.ts`; this module is its pump.
 *
 * @module
 */

import {
  type BackupServerAction,
  type BackupServerInput,
  BackupServerMachine,
} from "../../core/session/backup_server.ts";
import type { Manifest } from "../../core/backup/manifest.ts";
import { chooseParent, initRepository } from "../repository/repository.ts";
import type { Session } from "../hosts/session.ts";
import { beginSnapshot, type WriterStep } from "../repository/snapshot_writer.ts";
import {
  type BackupProgress,
  type ErrorChannelWatch,
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
 * Runs the server side of a backup over an established session: a pump over the pure machine
 * (`src/core/session/backup_server.ts`, whose table holds every decision). It feeds the
 * client's control messages and the end of the archive bytes in, performs what the machine asks
 * (open the snapshot, send, commit, abort, wait for the client's report) and feeds each result
 * back at once; it writes the archive bytes as they arrive.
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
  const pump = new ServerPump(session, options);
  const outcome = await pump.run();
  if (outcome.type === "done") {
    return { manifest: pump.committed!, fullReason: pump.fullReason, skipped: pump.skipped };
  }
  if (outcome.clientReason !== undefined) throw new PeerFailedError("client", outcome.clientReason);
  throw outcome.error;
}

type Outcome = Extract<BackupServerAction, { type: "done" | "failed" }>;

/** Performs the machine's actions over a session and a snapshot writer. */
class ServerPump {
  readonly machine = new BackupServerMachine();
  readonly skipped: Array<{ path: string; reason: string }> = [];
  readonly #clientFailure: ErrorChannelWatch;
  #writer: Awaited<ReturnType<typeof beginSnapshot>> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #end: (outcome: Outcome) => void = () => {};
  fullReason: string | null = null;
  committed: Manifest | undefined;

  constructor(readonly session: Session, readonly options: BackupServerOptions) {
    this.#clientFailure = watchErrorChannel(session, (entry) => this.skipped.push(entry));
  }

  /** Runs to the machine's end. */
  run(): Promise<Outcome> {
    const ended = new Promise<Outcome>((resolve) => (this.#end = resolve));
    this.#chain = this.#performAll(this.machine.start());
    return ended;
  }

  /** Feeds an input once the ones before it (and what they asked for) are done. */
  #feed(input: BackupServerInput): void {
    this.#chain = this.#chain.then(() => this.#drive(input));
  }

  /** Handles an input; each action's result is handled at once, before any other input. */
  async #drive(input: BackupServerInput): Promise<void> {
    await this.#performAll(this.machine.handle(input));
  }

  async #performAll(actions: readonly BackupServerAction[]): Promise<void> {
    for (const action of actions) {
      let result: BackupServerInput | undefined;
      try {
        result = await this.#perform(action);
      } catch (error) {
        return await this.#drive({ type: "failure", error });
      }
      if (result !== undefined) await this.#drive(result);
    }
  }

  /** Reads one control message; the machine asks for each (it reads none past the manifest). */
  #receive(): void {
    this.session.nextMessage("control").then(
      (body) => this.#feed({ type: "message", body }),
      (error) => this.#feed({ type: "failure", error }),
    );
  }

  async #readData(): Promise<void> {
    try {
      // Bounded by the client: each turn writes one chunk; the end of data ends the loop.
      for (let chunk = await this.session.nextData(); chunk !== null;) {
        await this.#writer!.write(chunk);
        this.session.releaseData(chunk); // its memory receives a later frame
        chunk = await this.session.nextData();
      }
      this.#feed({ type: "data-end" });
    } catch (error) {
      this.#feed({ type: "failure", error });
    }
  }

  async #perform(action: BackupServerAction): Promise<BackupServerInput | undefined> {
    switch (action.type) {
      case "receive":
        this.#receive();
        return undefined;
      case "open":
        return await this.#open(action.hello);
      case "send":
        if (!action.bestEffort) await this.session.sendMessage(action.channel, action.body);
        else await this.session.sendMessage(action.channel, action.body).catch(() => {});
        return undefined;
      case "progress":
        this.options.onProgress?.(action);
        return undefined;
      case "commit":
        this.committed = await this.#writer!.commit({
          ...(action.manifest as Record<string, unknown>),
          channelBytes: { ...this.session.bytes },
        });
        return { type: "committed", snapshotId: this.committed.id };
      case "abort":
        await this.#writer?.abort().catch(() => {});
        return undefined;
      case "await-client-report": {
        const reason = await this.#clientFailure.reasonWithin(action.waitMs);
        return { type: "client-report", reason };
      }
      case "done":
      case "failed":
        this.#end(action);
        return undefined;
    }
  }

  async #open(
    hello: Extract<BackupServerAction, { type: "open" }>["hello"],
  ): Promise<BackupServerInput> {
    const repo = await initRepository(this.options.repo);
    this.#writer = await beginSnapshot(repo, {
      lockWaitMs: this.options.lockWaitMs,
      signal: this.options.signal,
      onStep: this.options.onWriterStep,
    });
    const chosen = await chooseParent(repo, hello.sourceId, hello.mode, hello.incremental);
    this.fullReason = chosen.fullReason;
    // The archive bytes follow `begin`: read them from now on, beside the control messages.
    void this.#readData();
    return { type: "opened", snapshotId: this.#writer.id, parent: chosen.parent };
  }
}
