/**
 * The agent's side of a restore over a session: it receives the snapshot's manifest (validated
 * here, as any manifest), plans the restore itself (`planRestore`: each file's `data` reference), and
 * writes the target with the local restore's writer (`restorePlanned`: only paths from the
 * manifest, never through a symlink, each file under a temporary name until its size and
 * SHA-256 match). File bytes come as restore records on the data channel: for each archive the
 * agent asks the server for the members it needs and writes them as they arrive.
 *
 * @module
 */

import { PartJoiner, splitIntoParts } from "../../core/backup/protocol.ts";
import { decodeRecord, type RestoreRecord } from "../../core/backup/restore_stream.ts";
import { planRestore } from "../../core/backup/chain.ts";
import { parseManifest } from "../../core/backup/manifest.ts";
import type { MemberPiece } from "../repository/_archive_read.ts";
import {
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
import { expectFromPeer } from "../hosts/channels.ts";
import type { BackupProgress } from "./backup_client.ts";

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
 * Runs the agent's side of a restore over an established session.
 *
 * @param session the data session
 * @param options the target and what to restore
 * @returns the restore's summary
 * @throws {RestoreError} as the local restore does (`incomplete` lists what was not restored);
 *   protocol and socket errors when the session breaks
 */
export async function runRestoreReceiver(
  session: Session,
  options: RestoreReceiverOptions,
): Promise<RestoreSummary> {
  const startedMs = performance.now();
  const begin = await expectFromPeer(session, "restore-begin", "server");
  const joiner = new PartJoiner("manifest");
  // Bounded by PARTS_MAX inside the joiner.
  while (!joiner.done) joiner.add(await expectFromPeer(session, "part", "server"));
  const parsed = parseManifest(joiner.value());
  if (!parsed.ok) throw new RestoreError("bad-plan", `the server's manifest: ${parsed.message}`);
  const manifest = parsed.manifest;
  if (manifest.id !== begin.snapshot) {
    throw new SessionProtocolError(
      `the server sent manifest ${manifest.id}, not ${begin.snapshot}`,
    );
  }
  const planned = planRestore(manifest, options.path);
  if (!planned.ok) throw new RestoreError("bad-plan", planned.message);
  const totalBytes = planned.plan.entries.reduce(
    (sum, e) => sum + (e.type === "file" ? e.sizeBytes : 0),
    0,
  );
  const progress = new ProgressReporter(session, totalBytes, options);
  // On storage, file bytes are written from views of the ring (each frame given back after).
  session.lendData();
  const end = async () => {
    await progress.flush();
    await request(session, null, []); // the server waits for the end of the requests
  };
  let summary: RestoreSummary;
  try {
    summary = await restorePlanned(
      manifest,
      planned.plan,
      options,
      remoteArchives(session, progress),
      startedMs,
    );
  } catch (error) {
    if (error instanceof IncompleteRestore) await end(); // what could be restored was
    throw error;
  }
  await end();
  return summary;
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

  constructor(
    readonly session: Session,
    readonly totalBytes: number,
    readonly options: RestoreReceiverOptions,
  ) {}

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
 * One member's pieces as they arrive, up to its `end` (or a `problem`, thrown). A piece's bytes
 * may be a view of the storage ring (lent): its frame is given back before the next record is
 * asked for, and when the reader stops early (the writer failed), so the stream never stalls.
 */
class MemberStream {
  #ended = false;
  #held: Uint8Array | undefined;

  constructor(readonly session: Session, readonly index: number) {}

  /** Gives the frame of the last record back (written or hashed by now). */
  #release(): void {
    const frame = this.#held;
    this.#held = undefined;
    if (frame !== undefined) this.session.releaseData(frame);
  }

  async *pieces(): AsyncGenerator<MemberPiece> {
    try {
      // Bounded by the server: each turn takes one record; `end` or `problem` stops it.
      for (let turns = 0; turns < Number.MAX_SAFE_INTEGER && !this.#ended; turns++) {
        this.#release();
        const { record, frame } = await nextRecord(this.session);
        this.#held = frame;
        if (record.kind === "piece") yield { bytes: record.bytes, position: record.position };
        else if (record.kind === "hashed") yield { bytes: record.bytes };
        else if (record.kind === "end" && record.index === this.index) this.#ended = true;
        else if (record.kind === "problem" && record.index === this.index) {
          this.#ended = true;
          throw memberProblem(record.code, record.message);
        } else {
          throw new SessionProtocolError(`a ${record.kind} record inside member ${this.index}`);
        }
      }
    } finally {
      this.#release();
    }
  }

  /** Reads past what is left of the member (after its writer stopped early). */
  async drain(): Promise<void> {
    try {
      for await (const _ of this.pieces()) { /* skip */ }
    } catch (error) {
      if (!(error instanceof RestoreError)) throw error;
    }
  }
}

/** Archives whose members the server streams. */
function remoteArchives(session: Session, progress: ProgressReporter): ArchiveFiles {
  return async (snapshot, jobs, context) => {
    await request(session, snapshot, jobs);
    // Bounded by the server: each member comes once, then `archive-end`.
    for (let turns = 0; turns <= jobs.length * 2 + 1; turns++) {
      const { record, frame } = await nextRecord(session);
      session.releaseData(frame); // a head, problem or end: decoded, the frame is not needed
      if (record.kind === "archive-end") return;
      if (record.kind !== "head" && record.kind !== "problem") {
        throw new SessionProtocolError(`a ${record.kind} record between members`);
      }
      const job = jobs[record.index];
      if (job === undefined) {
        throw new SessionProtocolError(
          `member ${record.index} of ${jobs.length} was not asked for`,
        );
      }
      if (record.kind === "problem") {
        context.fail(job, memberProblem(record.code, record.message));
        continue;
      }
      const member = new MemberStream(session, record.index);
      const realSize = job.member.offset === undefined ? job.entry.sizeBytes : record.realSize;
      try {
        await context.write(job, realSize, member.pieces());
        await progress.add(job.entry.sizeBytes);
      } catch (error) {
        if (
          !(error instanceof RestoreError) &&
          !(error instanceof Error && error.name === "MemberError")
        ) {
          throw error;
        }
        await member.drain();
        context.fail(job, error);
      }
    }
    throw new SessionProtocolError(`archive ${snapshot}: more records than members`);
  };
}
