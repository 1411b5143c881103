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
  MembersRequestSchema,
  parseSessionMessage,
  PartJoiner,
  SessionProtocolError,
  splitIntoParts,
} from "../../core/backup/protocol.ts";
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
import { openRepository, repoPaths, resolveSnapshot } from "../repository/repository.ts";
import type { Session } from "../hosts/session.ts";
import { type BackupProgress, PeerFailedError, peerProgress } from "../agent/backup_client.ts";
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
 * Runs the server's side of a restore over an established session.
 *
 * @param session the data session (proven with the agent key)
 * @param options the repository and snapshot
 * @returns the snapshot and what was streamed
 * @throws when the snapshot cannot be resolved or the session breaks
 */
export async function runRestoreSender(
  session: Session,
  options: RestoreSenderOptions,
): Promise<RestoreSenderResult> {
  const repo = await openRepository(options.repo);
  const manifest = await resolveSnapshot(repo, options.snapshot, options.source);
  const archives = archivesOf(manifest);
  await session.sendMessage("control", { type: "restore-begin", snapshot: manifest.id });
  for (const part of splitIntoParts("manifest", manifest)) {
    await session.sendMessage("control", part);
  }
  let members = 0;
  let unreadable = 0;
  const pieces: PieceCounts = { inPlace: 0, copied: 0 };
  const requestsMax = archives.size + 1; // one per archive, then the end
  for (let requests = 0; requests < requestsMax; requests++) {
    const request = await nextRequest(session, options.onProgress);
    if (request.archive === null) {
      return { snapshot: manifest.id, source: manifest.source, members, unreadable, pieces };
    }
    if (!archives.delete(request.archive)) {
      throw new SessionProtocolError(
        `archive ${request.archive} holds none of the snapshot's files, or was asked for twice`,
      );
    }
    const path = repoPaths.archive(repo, request.archive);
    const sent = request.members.some((m) => m.offset === null)
      ? await sendByName(session, path, request.archive, request.members, pieces)
      : await sendAtOffsets(session, path, request.members, pieces);
    members += request.members.length;
    unreadable += sent.problems;
    await session.sendData(encodeRecord({ kind: "archive-end" }));
  }
  throw new SessionProtocolError(`more than ${requestsMax} archive requests`);
}

/** The agent's next request (its `progress` reports on the way go to `onProgress`). */
async function nextRequest(
  session: Session,
  onProgress: RestoreSenderOptions["onProgress"],
) {
  const joiner = new PartJoiner("members");
  // Bounded: progress is throttled by the agent, parts by PARTS_MAX.
  while (!joiner.done) {
    const message = parseSessionMessage(await session.nextMessage("control"));
    if (message.type === "progress") onProgress?.(peerProgress(message, session));
    else if (message.type === "part") joiner.add(message);
    else if (message.type === "failed") throw new PeerFailedError("client", message.message);
    else throw new SessionProtocolError(`unexpected ${message.type} during a restore`);
  }
  const parsed = MembersRequestSchema.safeParse(joiner.value());
  if (!parsed.success) {
    throw new SessionProtocolError(`malformed member request: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
}

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
