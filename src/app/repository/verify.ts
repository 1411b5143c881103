/**
 * Verify: re-reads snapshot archives and checks every file's size and SHA-256 against the
 * manifests. Reports problems (first ones, by file name) instead of stopping at the first.
 *
 * @module
 */

import type { FileEntry, Manifest } from "../../core/backup/manifest.ts";
import {
  checkedBody,
  type MemberPiece,
  openArchive,
  openMember,
  readArchiveFiles,
} from "./_archive_read.ts";
import { type ArchiveReader, MemberError } from "./_tar_member.ts";
import { BackupError } from "../errors.ts";
import {
  listSnapshotIds,
  openRepository,
  readManifest,
  repoPaths,
  type Repository,
  resolveSnapshot,
} from "./repository.ts";

/** Most problems reported by one verify. */
export const VERIFY_PROBLEMS_MAX = 20;

/** One thing verify found wrong. */
export interface VerifyProblem {
  /** Snapshot whose archive or manifest has the problem. */
  readonly snapshot: string;
  /** The file concerned, if one is. */
  readonly path?: string;
  /** What kind of problem: a `RestoreError` or `RepositoryError` code (`missing-data`, `hash-mismatch`, ...). */
  readonly code: string;
  /** What is wrong, with the facts. */
  readonly message: string;
}

/** What verify checked and found. */
export interface VerifyReport {
  /** True when no problem was found. */
  readonly ok: boolean;
  /** The snapshots checked. */
  readonly snapshots: string[];
  /** Files whose bytes were read and hashed. */
  readonly files: number;
  /** File bytes read. */
  readonly bytes: number;
  /** What was found wrong (at most `VERIFY_PROBLEMS_MAX`). */
  readonly problems: VerifyProblem[];
}

/** Files whose bytes live in each snapshot's archive, as referenced by `manifests`. */
function filesByArchive(manifests: readonly Manifest[]): Map<string, Map<string, FileEntry>> {
  const byArchive = new Map<string, Map<string, FileEntry>>();
  for (const manifest of manifests) {
    for (const entry of manifest.entries) {
      // A hard link's bytes are its primary's member, checked with the primary.
      if (entry.type !== "file" || entry.hardlink !== undefined) continue;
      let files = byArchive.get(entry.data);
      if (files === undefined) byArchive.set(entry.data, files = new Map());
      files.set(entry.path, entry);
    }
  }
  return byArchive;
}

async function checkArchive(
  repo: Repository,
  snapshot: string,
  files: ReadonlyMap<string, FileEntry>,
  report: VerifyReport & { files: number; bytes: number },
): Promise<void> {
  const note = (problem: VerifyProblem) => {
    if (report.problems.length < VERIFY_PROBLEMS_MAX) report.problems.push(problem);
  };
  const atOffsets = [...files.values()].filter((f) => f.offset !== undefined);
  if (atOffsets.length > 0) await checkMembers(repo, snapshot, atOffsets, report, note);
  const byName = new Map([...files].filter(([, f]) => f.offset === undefined));
  if (byName.size > 0) await checkByName(repo, snapshot, byName, report, note);
}

/** Version-2 manifests: each member read at its offset, so one damaged member spares the rest. */
async function checkMembers(
  repo: Repository,
  snapshot: string,
  files: readonly FileEntry[],
  report: { files: number; bytes: number },
  note: (problem: VerifyProblem) => void,
): Promise<void> {
  let reader: ArchiveReader;
  try {
    reader = await openArchive(repoPaths.archive(repo, snapshot));
  } catch (error) {
    const message = `archive of snapshot ${snapshot} cannot be read: ${
      error instanceof Error ? error.message : String(error)
    }`;
    note({ snapshot, code: "bad-archive", message });
    return;
  }
  try {
    for (const entry of [...files].sort((a, b) => a.offset! - b.offset!)) {
      try {
        const member = await openMember(reader, entry.offset!, entry.path);
        await checkedBody(entry, snapshot, bytesOf(member.pieces));
        report.files++;
        report.bytes += entry.sizeBytes;
      } catch (error) {
        if (!(error instanceof BackupError) && !(error instanceof MemberError)) throw error;
        const code = error instanceof BackupError ? error.code : "bad-archive";
        const message = error instanceof BackupError
          ? error.message
          : `file ${JSON.stringify(entry.path)} (snapshot ${snapshot}): ${error.message}`;
        note({ snapshot, path: entry.path, code, message });
      }
    }
  } finally {
    reader.close();
  }
}

async function* bytesOf(pieces: AsyncIterable<MemberPiece>): AsyncGenerator<Uint8Array> {
  for await (const piece of pieces) yield piece.bytes;
}

/** Version-1 manifests: the archive read through, members matched by name. */
async function checkByName(
  repo: Repository,
  snapshot: string,
  files: ReadonlyMap<string, FileEntry>,
  report: { files: number; bytes: number },
  note: (problem: VerifyProblem) => void,
): Promise<void> {
  let seen = new Set<string>();
  try {
    seen = await readArchiveFiles(
      repoPaths.archive(repo, snapshot),
      snapshot,
      files,
      async (entry, body) => {
        try {
          await checkedBody(entry, snapshot, body);
          report.files++;
          report.bytes += entry.sizeBytes;
        } catch (error) {
          if (!(error instanceof BackupError)) throw error;
          note({ snapshot, path: entry.path, code: error.code, message: error.message });
        }
      },
    );
  } catch (error) {
    if (!(error instanceof BackupError)) throw error;
    note({ snapshot, code: error.code, message: error.message });
    return;
  }
  for (const path of files.keys()) {
    if (seen.has(path)) continue;
    note({
      snapshot,
      path,
      code: "missing-data",
      message: `file ${JSON.stringify(path)} is missing from the archive of snapshot ${snapshot}`,
    });
  }
}

/**
 * Verifies one snapshot (every file it references, across its chain) or all snapshots.
 *
 * @param repoPath the repository directory
 * @param snapshot an id or `"latest"`; all snapshots when omitted
 * @returns the report; `ok` is false when any problem was found
 * @throws {RepositoryError} when the repository or a manifest cannot be read
 *
 * @example Verifying every snapshot
 * ```ts ignore
 * import { verifyRepository } from "./verify.ts";
 * const report = await verifyRepository("./.lanfree/repo");
 * for (const problem of report.problems) console.error(problem.message);
 * ```
 */
export async function verifyRepository(repoPath: string, snapshot?: string): Promise<VerifyReport> {
  const repo = await openRepository(repoPath);
  const manifests: Manifest[] = [];
  if (snapshot === undefined) {
    for (const id of await listSnapshotIds(repo)) manifests.push(await readManifest(repo, id));
  } else manifests.push(await resolveSnapshot(repo, snapshot));
  const report = {
    ok: true,
    snapshots: manifests.map((m) => m.id),
    files: 0,
    bytes: 0,
    problems: [],
  };
  for (const [archive, files] of filesByArchive(manifests)) {
    await checkArchive(repo, archive, files, report);
  }
  return { ...report, ok: report.problems.length === 0 };
}
