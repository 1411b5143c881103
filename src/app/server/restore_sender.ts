/**
 * The server's side of a restore over a session: it sends the snapshot's manifest on the control
 * channel, then serves the agent's requests, one archive at a time, by reading
 * each requested member from the repository (at its offset; by name for a version-1 archive,
 * whose head then carries size 0: the agent takes its entry's) and streaming it on the data
 * channel as restore records (`restore_stream.ts`). A member it
 * cannot read is a `problem` record, and the agent lists it; the rest is still sent. The server
 * writes nothing: the agent writes, with the local restore's path and hash checks.
 *
 * @module
 */

import {
  type MembersRequest,
  MembersRequestSchema,
  PartJoiner,
  type PartMessage,
  type SessionMessage,
  SessionProtocolError,
  splitIntoParts,
} from "../../core/backup/protocol.ts";
import {
  type RestoreServerAction,
  type RestoreServerEvent,
  RestoreServerMachine,
} from "../../core/session/restore_server_machine.ts";
import { invariant } from "../../core/assert.ts";
import { SessionPump, type Unstamped } from "../hosts/_session_pump.ts";
import { encodeRecord, piecePrefix } from "../../core/backup/restore_stream.ts";
import { planRestore } from "../../core/backup/chain.ts";
import type { FileEntry, Manifest } from "../../core/backup/manifest.ts";
import {
  type MemberPiece,
  openArchive,
  openMember,
  type PieceRoom,
  readArchiveFiles,
} from "../repository/_archive_read.ts";
import {
  openRepository,
  repoPaths,
  type Repository,
  resolveSnapshot,
} from "../repository/repository.ts";
import type { Session } from "../hosts/session.ts";
import { type BackupProgress, peerProgress } from "../hosts/peer_reports.ts";
import { BackupError } from "../errors.ts";

/** What to restore. */
export interface RestoreSenderOptions {
  /** The repository (a canonical path inside the server's roots). */
  readonly repo: string;
  /** A snapshot id, or `latest`. */
  readonly snapshot: string;
  /** With `latest`: the newest snapshot of this source. */
  readonly source?: string | undefined;
  /** Called with the agent's progress reports. */
  readonly onProgress?: (progress: BackupProgress) => void;
}

/** What the server sent. */
export interface RestoreSenderResult {
  /** The snapshot restored. */
  readonly snapshot: string;
  /** Its source, as recorded. */
  readonly source: string;
  /** Members streamed, and members that could not be read. */
  readonly members: number;
  readonly unreadable: number;
  /** File pieces read straight into the storage send ring (`inPlace`), or sent by copy. */
  readonly pieces: PieceCounts;
}

/** File pieces sent: read straight into a ring reservation, or copied into the ring. */
export interface PieceCounts {
  inPlace: number;
  copied: number;
}

/**
 * The archives a restore of `manifest` may read: those its files' `data` references name (a
 * request for any other is a protocol error).
 */
function archivesOf(manifest: Manifest): Set<string> {
  const planned = planRestore(manifest);
  if (!planned.ok) throw new SessionProtocolError(planned.message);
  return new Set(planned.plan.archives.map((a) => a.snapshot));
}

/**
 * Runs the server's side of a restore over an established session: the pump of the restore
 * server machine (`src/core/session/restore_server_machine.ts`). It feeds the machine what
 * happens (the snapshot resolved, the manifest sent, the agent's control messages and joined
 * member requests, an archive streamed, frames heard, ticks of its own timer, failures) and
 * carries the actions out; which request is acceptable when, and when to send a keepalive or
 * give up on a silent agent, are the machine's rows.
 *
 * @param session the data session (proven with the agent key; the pump takes over its
 *   keepalives)
 * @param options the repository and snapshot
 * @returns the snapshot and what was streamed
 * @throws when the snapshot cannot be resolved or the session breaks
 */
export async function runRestoreSender(
  session: Session,
  options: RestoreSenderOptions,
): Promise<RestoreSenderResult> {
  return await new RestoreSenderPump(session, options).run();
}

type SenderPosted = Unstamped<RestoreServerEvent>;

/** The pump of one restore server session: the runner's side of each action. */
class RestoreSenderPump {
  readonly #pump: SessionPump<RestoreServerEvent, RestoreServerAction>;
  readonly #machine: RestoreServerMachine;
  #repo: Repository | undefined;
  #manifest: Manifest | undefined;
  #joiner = new PartJoiner("members");
  #request: MembersRequest | undefined;
  #members = 0;
  #unreadable = 0;
  readonly #pieces: PieceCounts = { inPlace: 0, copied: 0 };
  #outcome: { result: RestoreSenderResult } | { error: Error } | undefined;

  constructor(readonly session: Session, readonly options: RestoreSenderOptions) {
    this.#pump = new SessionPump(session);
    this.#machine = new RestoreServerMachine(this.#pump.times, performance.now());
  }

  async run(): Promise<RestoreSenderResult> {
    this.#pump.background(this.#open(), (archives) => ({ type: "opened", archives }));
    this.#pump.readControl(() => false);
    await this.#pump.run(this.#machine, (action, event) => this.#do(action, event));
    const outcome = this.#outcome!;
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  }

  async #open(): Promise<string[]> {
    const repo = await openRepository(this.options.repo);
    const manifest = await resolveSnapshot(repo, this.options.snapshot, this.options.source);
    this.#repo = repo;
    this.#manifest = manifest;
    return [...archivesOf(manifest)];
  }

  async #sendManifest(): Promise<void> {
    const manifest = this.#manifest!;
    await this.session.sendMessage("control", { type: "restore-begin", snapshot: manifest.id });
    for (const part of splitIntoParts("manifest", manifest)) {
      await this.session.sendMessage("control", part);
    }
  }

  async #do(action: RestoreServerAction, event: SenderPosted): Promise<void> {
    const message = event.type === "message" ? event.message as SessionMessage : undefined;
    switch (action.type) {
      case "send-manifest":
        this.#pump.background(this.#sendManifest(), () => ({ type: "manifest-sent" }));
        return;
      case "report-progress":
        this.options.onProgress?.(peerProgress(message as ProgressMessage, this.session));
        return;
      case "take-request-part":
        return this.#takePart(message as PartMessage);
      case "stream-archive":
        this.#pump.background(this.#stream(action.archive), () => ({ type: "archive-sent" }));
        return;
      case "send-keepalive":
        this.session.sendKeepalives();
        return;
      case "send-restore-done":
        // Best effort, as `committed` is: the server is done; an agent that misses it fails.
        await this.session.sendMessage("control", {
          type: "restore-done",
          snapshot: this.#manifest!.id,
        }).catch(() => {});
        return;
      case "done":
        this.#outcome = {
          result: {
            snapshot: this.#manifest!.id,
            source: this.#manifest!.source,
            members: this.#members,
            unreadable: this.#unreadable,
            pieces: this.#pieces,
          },
        };
        return;
      case "failed":
        this.#outcome = { error: this.#pump.failedWith("client", action.agentReason) };
        return;
    }
  }

  /** Joins a member request; once whole and valid it is the machine's `request`. */
  #takePart(part: PartMessage): void {
    try {
      this.#joiner.add(part);
      if (!this.#joiner.done) return;
      const parsed = MembersRequestSchema.safeParse(this.#joiner.value());
      this.#joiner = new PartJoiner("members");
      if (!parsed.success) {
        throw new SessionProtocolError(
          `malformed member request: ${parsed.error.issues[0]?.message}`,
        );
      }
      this.#request = parsed.data;
      this.#pump.followUp({ type: "request", archive: parsed.data.archive });
    } catch (error) {
      this.#pump.postFailure(error);
    }
  }

  /** Streams the members of the request the machine serves, then `archive-end`. */
  async #stream(archive: string): Promise<void> {
    const request = this.#request!;
    invariant(request.archive === archive, `serving ${archive}, asked for ${request.archive}`);
    const path = repoPaths.archive(this.#repo!, archive);
    const sent = request.members.some((m) => m.offset === null)
      ? await sendByName(this.session, path, archive, request.members, this.#pieces)
      : await sendAtOffsets(this.session, path, request.members, this.#pieces);
    this.#members += request.members.length;
    this.#unreadable += sent.problems;
    await this.session.sendData(encodeRecord({ kind: "archive-end" }));
  }
}

type ProgressMessage = Extract<SessionMessage, { type: "progress" }>;

type Wanted = ReadonlyArray<{ readonly path: string; readonly offset: number | null }>;

/** A member the server could not read, as the agent will list it. */
function problemOf(index: number, error: unknown) {
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof BackupError ? error.code : "bad-archive";
  return encodeRecord({ kind: "problem", index, code, message: message.slice(0, 2000) });
}

async function sendAtOffsets(
  session: Session,
  path: string,
  wanted: Wanted,
  pieces: PieceCounts,
) {
  let problems = 0;
  let reader;
  try {
    reader = await openArchive(path);
  } catch (error) {
    for (let index = 0; index < wanted.length; index++) {
      await session.sendData(problemOf(index, error));
    }
    return { problems: wanted.length };
  }
  try {
    const order = wanted.map((_, index) => index).sort((a, b) =>
      wanted[a]!.offset! - wanted[b]!.offset!
    );
    const frames = new RingPieces(session, pieces);
    for (const index of order) {
      const member = wanted[index]!;
      try {
        const room = session.dataInPlace ? frames.room : undefined;
        const opened = await openMember(reader, member.offset!, member.path, room);
        await session.sendData(encodeRecord({ kind: "head", index, realSize: opened.realSize }));
        for await (const piece of opened.pieces) await frames.send(piece);
        await session.sendData(encodeRecord({ kind: "end", index }));
      } catch (error) {
        await frames.abandon();
        if (!isReadError(error)) throw error;
        problems++;
        await session.sendData(problemOf(index, error));
      }
    }
  } finally {
    reader.close();
  }
  return { problems };
}

/**
 * A member's pieces read straight into data frames reserved in the send ring (the archive's
 * bytes `pread` into the ring, no copy), each committed with its record prefix once read;
 * a piece read elsewhere (a sparse map) is sent by copy.
 */
class RingPieces {
  #prefixBytes: number | undefined;

  constructor(readonly session: Session, readonly counts: PieceCounts) {}

  /** Reserves the frame of the piece at `position` and gives its bytes' part. */
  readonly room: PieceRoom = async (maxBytes, position) => {
    const prefix = piecePrefix(position);
    const frame = await this.session.reserveData(prefix.length + maxBytes);
    frame.set(prefix);
    this.#prefixBytes = prefix.length;
    return frame.subarray(prefix.length);
  };

  /** Sends the piece just read: commits its frame, or sends it by copy. */
  async send(piece: MemberPiece): Promise<void> {
    const prefixBytes = this.#prefixBytes;
    this.#prefixBytes = undefined;
    if (prefixBytes === undefined) {
      this.counts.copied++;
      return await this.session.sendDataParts([piecePrefix(piece.position ?? null), piece.bytes]);
    }
    await this.session.commitData(prefixBytes + piece.bytes.length);
    this.counts.inPlace++;
  }

  /** Gives up the frame a failed read left reserved. */
  async abandon(): Promise<void> {
    if (this.#prefixBytes === undefined) return;
    this.#prefixBytes = undefined;
    await this.session.commitData(0);
  }
}

/** A failure of the archive (reported to the agent), not of the session (which ends the job). */
function isReadError(error: unknown): boolean {
  return error instanceof BackupError || (error instanceof Error && error.name === "MemberError");
}

async function sendByName(
  session: Session,
  path: string,
  snapshot: string,
  wanted: Wanted,
  pieces: PieceCounts,
) {
  const byPath = new Map(wanted.map((member, index) => [member.path, index]));
  const entries = new Map(
    wanted.map((member) => [member.path, { path: member.path } as FileEntry]),
  );
  const sent = new Set<number>();
  let problems = 0;
  try {
    await readArchiveFiles(path, snapshot, entries, async (entry, body) => {
      const index = byPath.get(entry.path)!;
      sent.add(index);
      // A member read by name has no separate real size: the agent takes its entry's.
      await session.sendData(encodeRecord({ kind: "head", index, realSize: 0 }));
      let position = 0;
      for await (const chunk of body) {
        await session.sendDataParts([piecePrefix(position), chunk]);
        pieces.copied++;
        position += chunk.length;
      }
      await session.sendData(encodeRecord({ kind: "end", index }));
    });
  } catch (error) {
    if (!isReadError(error)) throw error;
    for (const index of byPath.values()) {
      if (sent.has(index)) continue;
      problems++;
      await session.sendData(problemOf(index, error));
    }
  }
  return { problems };
}
