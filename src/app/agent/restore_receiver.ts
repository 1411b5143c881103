/**
 * The agent's side of a restore over a session: it receives the snapshot's manifest (validated
 * here, as any manifest), plans the restore itself (`planRestore`: each file's `data` reference), and
 * writes the target with the local restore's writer (`restorePlanned`: only paths from the
 * manifest, never through a symlink, each file under a temporary name until its size and
 * SHA-256 match). File bytes come as restore records on the data channel: for each archive the
 * agent asks the server for the members it needs and writes them as they arrive.
 *
 * It is the pump of the restore client machine (`src/core/session/restore_client_machine.ts`):
 * which message or record is acceptable when, what a write failure means, when the restore ends,
 * when to send a keepalive and when to give up on a silent server are the machine's rows.
 *
 * @module
 */

import { PartJoiner, type PartMessage, splitIntoParts } from "../../core/backup/protocol.ts";
import { decodeRecord, type RestoreRecord } from "../../core/backup/restore_stream.ts";
import { planRestore, type RestorePlan } from "../../core/backup/chain.ts";
import { type Manifest, parseManifest } from "../../core/backup/manifest.ts";
import {
  type RestoreClientAction,
  type RestoreClientEvent,
  RestoreClientMachine,
} from "../../core/session/restore_client_machine.ts";
import { invariant } from "../../core/assert.ts";
import type { MemberPiece } from "../repository/_archive_read.ts";
import {
  type ArchiveContext,
  type ArchiveFiles,
  type FileJob,
  IncompleteRestore,
  type RestoreOptions,
  restorePlanned,
  type RestoreSummary,
} from "../repository/restore.ts";
import { RestoreError, type RestoreErrorCode } from "../errors.ts";
import { SessionProtocolError } from "../../core/backup/protocol.ts";
import type { Session } from "../hosts/session.ts";
import { SessionPump, type Unstamped } from "../hosts/_session_pump.ts";
import { type BackupProgress, errorText, watchErrorChannel } from "./backup_client.ts";

/** Where and how to restore. */
export interface RestoreReceiverOptions
  extends Pick<RestoreOptions, "target" | "overwrite" | "preservePermissions" | "hooks"> {
  /** Only this path of the snapshot. */
  readonly path?: string | undefined;
  /** Called with progress (also sent to the server), at most every `progressEveryMs`. */
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly progressEveryMs?: number;
}

/** Codes a server may give for a member it could not read (all on the repository's side). */
const REPOSITORY_CODES: ReadonlySet<string> = new Set([
  "bad-archive",
  "read-failed",
  "missing-data",
  "hash-mismatch",
  "size-mismatch",
]);

/**
 * Runs the agent's side of a restore over an established session: the pump of the restore
 * client machine. It feeds the machine what happens (the server's control messages, the
 * manifest joined and planned, each archive the writer wants, the data channel's records other
 * than a member's pieces, each file's write, the writer's end, the server's `failed` report,
 * frames heard, ticks of its own timer, failures), each stamped with its clock, and carries the
 * actions out.
 *
 * @param session the data session (the pump takes over its keepalives)
 * @param options the target and what to restore
 * @returns the restore's summary
 * @throws {RestoreError} as the local restore does (`incomplete` lists what was not restored);
 *   protocol and socket errors when the session breaks, `PeerFailedError` when the server
 *   reports its failure
 *
 * @example Restoring over a session the job opened
 * ```ts ignore
 * import { runRestoreReceiver } from "./restore_receiver.ts";
 * const summary = await runRestoreReceiver(session, { target: "/srv/restored" });
 * console.log(`${summary.files} files restored`);
 * ```
 */
export async function runRestoreReceiver(
  session: Session,
  options: RestoreReceiverOptions,
): Promise<RestoreSummary> {
  return await new RestoreReceiverPump(session, options).run();
}

type ReceiverPosted = Unstamped<RestoreClientEvent>;

/** Thrown into the writer's reads once the session ended (its outcome is the machine's). */
class SessionEnded extends Error {
  constructor() {
    super("the restore session ended");
    this.name = "SessionEnded";
  }
}

/** The pump of one restore client session: the runner's side of each action. */
class RestoreReceiverPump {
  readonly #pump: SessionPump<RestoreClientEvent, RestoreClientAction>;
  readonly #machine: RestoreClientMachine;
  readonly #startedMs = performance.now();
  #joiner = new PartJoiner("manifest");
  #planned: { manifest: Manifest; plan: RestorePlan } | undefined;
  #progress: ProgressReporter | undefined;
  /** The members of the archive being asked for (its request goes out in `request-archive`). */
  #jobs: readonly FileJob[] = [];
  /** The action the data side waits for after its event (it acts on it). */
  #verdict: RestoreClientAction | undefined;
  #restored: { summary: RestoreSummary } | { incomplete: IncompleteRestore } | undefined;
  #outcome: { result: RestoreSummary } | { error: Error } | undefined;

  constructor(readonly session: Session, readonly options: RestoreReceiverOptions) {
    this.#pump = new SessionPump(session);
    this.#machine = new RestoreClientMachine(this.#pump.times, performance.now());
    watchErrorChannel(session, undefined, (reason) => {
      this.#pump.post({ type: "server-report", reason });
    });
  }

  async run(): Promise<RestoreSummary> {
    this.#pump.readControl(() => false);
    await this.#pump.run(this.#machine, (action, event) => this.#do(action, event));
    const outcome = this.#outcome!;
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  async #do(action: RestoreClientAction, event: ReceiverPosted): Promise<void> {
    switch (action.type) {
      case "take-manifest-part":
        return this.#takePart((event as { message: unknown }).message as PartMessage);
      case "write-target":
        this.#progress = new ProgressReporter(this.session, this.#planned!.plan, this.options);
        // On storage, file bytes are written from views of the ring (each frame given back after).
        this.session.lendData();
        this.#pump.background(this.#write(), () => ({ type: "restored" }));
        return;
      case "request-archive":
        await request(this.session, action.archive, this.#jobs).catch((error) =>
          this.#pump.postFailure(error)
        );
        this.#verdict = action;
        return;
      case "send-end":
        await this.#progress!.flush();
        // The server waits for the end of the requests, and answers it with `restore-done`.
        await request(this.session, null, []).catch((error) => this.#pump.postFailure(error));
        return;
      case "send-keepalive":
        this.session.sendKeepalives();
        return;
      case "abort":
        return; // the writer's next event finds the session ended (a read in flight ends at close)
      case "done": {
        const restored = this.#restored!;
        this.#outcome = "summary" in restored
          ? { result: restored.summary }
          : { error: restored.incomplete };
        return;
      }
      case "failed":
        this.#outcome = { error: this.#pump.failedWith("server", action.serverReason) };
        return;
      default: // the data side's verdicts: it acts on them once its event was taken
        this.#verdict = action;
    }
  }

  /** Joins the manifest; once whole, valid and planned it is the machine's `manifest`. */
  #takePart(part: PartMessage): void {
    try {
      this.#joiner.add(part); // bounded by PARTS_MAX inside the joiner
      if (!this.#joiner.done) return;
      const parsed = parseManifest(this.#joiner.value());
      if (!parsed.ok) {
        throw new RestoreError("bad-plan", `the server's manifest: ${parsed.message}`);
      }
      const planned = planRestore(parsed.manifest, this.options.path);
      if (!planned.ok) throw new RestoreError("bad-plan", planned.message);
      this.#planned = { manifest: parsed.manifest, plan: planned.plan };
      this.#pump.followUp({
        type: "manifest",
        snapshotId: parsed.manifest.id,
        archives: planned.plan.archives.map((a) => a.snapshot),
      });
    } catch (error) {
      this.#pump.postFailure(error);
    }
  }

  /** The writer: the whole plan, then `restored` (whole, or with files not restored listed). */
  async #write(): Promise<void> {
    const { manifest, plan } = this.#planned!;
    try {
      const summary = await restorePlanned(
        manifest,
        plan,
        this.options,
        this.#archives,
        this.#startedMs,
      );
      this.#restored = { summary };
    } catch (error) {
      if (!(error instanceof IncompleteRestore)) throw error;
      this.#restored = { incomplete: error }; // what could be restored was
    }
  }

  /** Posts an event of the data side and returns the machine's verdict on it. */
  async ask(event: ReceiverPosted): Promise<RestoreClientAction> {
    await this.#pump.post(event);
    const verdict = this.#verdict;
    this.#verdict = undefined;
    if (this.#machine.ended || verdict === undefined) throw new SessionEnded();
    return verdict;
  }

  /** Archives whose members the server streams, each record between members a machine event. */
  readonly #archives: ArchiveFiles = async (snapshot, jobs, context) => {
    this.#jobs = jobs;
    await this.ask({ type: "archive-wanted", archive: snapshot, members: jobs.length });
    // Bounded: the machine takes each member once (its head or problem), then `archive-end`.
    for (let turns = 0; turns <= jobs.length; turns++) {
      const { record, frame } = await nextRecord(this.session);
      this.session.releaseData(frame); // a head, problem or end: decoded, the frame is not needed
      const verdict = await this.ask({ type: "record", record: recordOf(record) });
      if (verdict.type === "archive-done") return;
      const job = jobs[(record as { index: number }).index]!;
      if (verdict.type === "list-problem" && record.kind === "problem") {
        context.fail(job, memberProblem(record.code, record.message));
      } else if (verdict.type === "write-member" && record.kind === "head") {
        await this.#writeMember(
          job,
          record.realSize,
          new MemberStream(this, record.index),
          context,
        );
      } else invariant(false, `a ${verdict.type} verdict on a ${record.kind} record`);
    }
    invariant(false, `archive ${snapshot}: more records than its ${jobs.length} members`);
  };

  /** Writes one member's file; a failed write is the file's problem or the restore's. */
  async #writeMember(
    job: FileJob,
    headSize: number,
    member: MemberStream,
    context: ArchiveContext,
  ): Promise<void> {
    const realSize = job.member.offset === undefined ? job.entry.sizeBytes : headSize;
    try {
      await context.write(job, realSize, member.pieces());
    } catch (error) {
      if (this.#machine.ended || error instanceof SessionEnded) throw new SessionEnded();
      const fileProblem = error instanceof RestoreError ||
        (error instanceof Error && error.name === "MemberError");
      if (!fileProblem) {
        this.#pump.postFailure(error, "write-failed", { scope: "restore" });
        throw new SessionEnded();
      }
      const verdict = await this.ask({
        type: "write-failed",
        scope: "file",
        reason: errorText(error),
      });
      if (verdict.type === "skip-member") await member.drain();
      context.fail(job, error);
      return;
    }
    await this.ask({ type: "written" });
    await this.#progress!.add(job.entry.sizeBytes);
  }
}

/** What the machine sees of a record: its kind and the member it names. */
function recordOf(record: RestoreRecord): { kind: RestoreRecord["kind"]; index?: number } {
  return "index" in record ? { kind: record.kind, index: record.index } : { kind: record.kind };
}

async function request(session: Session, archive: string | null, jobs: readonly FileJob[]) {
  const members = jobs.map((j) => ({ path: j.member.path, offset: j.member.offset ?? null }));
  for (const part of splitIntoParts("members", { archive, members })) {
    await session.sendMessage("control", part);
  }
}

/** Progress of the files written, to the caller and to the server now and then. */
class ProgressReporter {
  files = 0;
  bytes = 0;
  #lastMs = 0;
  readonly totalBytes: number;

  constructor(
    readonly session: Session,
    plan: RestorePlan,
    readonly options: RestoreReceiverOptions,
  ) {
    this.totalBytes = plan.entries.reduce(
      (sum, e) => sum + (e.type === "file" ? e.sizeBytes : 0),
      0,
    );
  }

  async add(sizeBytes: number): Promise<void> {
    this.files++;
    this.bytes += sizeBytes;
    const nowMs = performance.now();
    if (nowMs - this.#lastMs >= (this.options.progressEveryMs ?? 250)) {
      this.#lastMs = nowMs;
      await this.flush();
    }
  }

  async flush(): Promise<void> {
    const progress = { files: this.files, bytes: this.bytes, totalBytes: this.totalBytes };
    this.options.onProgress?.(progress);
    await this.session.sendMessage("control", { type: "progress", ...progress }).catch(() => {});
  }
}

/** The next record on the data channel (a frame released once its record was used). */
async function nextRecord(session: Session): Promise<{ record: RestoreRecord; frame: Uint8Array }> {
  const frame = await session.nextData();
  if (frame === null) throw new SessionProtocolError("the server ended the data stream early");
  const record = decodeRecord(frame);
  if (!record.ok) throw new SessionProtocolError(`restore stream: ${record.message}`);
  return { record: record.value, frame };
}

function memberProblem(code: string, message: string): RestoreError {
  const known = REPOSITORY_CODES.has(code) ? code as RestoreErrorCode : "read-failed";
  return new RestoreError(known, `the server could not read it: ${message}`);
}

/**
 * One member's pieces as they arrive (the hot path: straight to the writer), up to the record
 * that is not a piece, which the machine takes: the member's `end` ends them, its `problem`
 * ends them with the server's reason (thrown). A piece's bytes may be a view of the storage ring
 * (lent): its frame is given back before the next record is asked for, and when the reader stops
 * early (the writer failed), so the stream never stalls.
 */
class MemberStream {
  #ended = false;
  #held: Uint8Array | undefined;

  constructor(readonly pump: RestoreReceiverPump, readonly index: number) {}

  /** Gives the frame of the last record back (written or hashed by now). */
  #release(): void {
    const frame = this.#held;
    this.#held = undefined;
    if (frame !== undefined) this.pump.session.releaseData(frame);
  }

  async *pieces(): AsyncGenerator<MemberPiece> {
    try {
      // Bounded by the server: each turn takes one record; the machine ends the member.
      for (let turns = 0; turns < Number.MAX_SAFE_INTEGER && !this.#ended; turns++) {
        this.#release();
        const { record, frame } = await nextRecord(this.pump.session);
        this.#held = frame;
        if (record.kind === "piece") yield { bytes: record.bytes, position: record.position };
        else if (record.kind === "hashed") yield { bytes: record.bytes };
        else {
          this.#release();
          const verdict = await this.pump.ask({ type: "record", record: recordOf(record) });
          this.#ended = true;
          if (verdict.type === "end-member" && verdict.unreadable && record.kind === "problem") {
            throw memberProblem(record.code, record.message);
          }
        }
      }
    } finally {
      this.#release();
    }
  }

  /** Reads past what is left of the member (after its writer stopped early). */
  async drain(): Promise<void> {
    for await (const _ of this.pieces()) { /* skip */ }
  }
}
