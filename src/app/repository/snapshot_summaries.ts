/**
 * Snapshot listings with bounded memory: a summary of each snapshot (no entries) and its entries
 * a page at a time, both read from the manifest file with a streaming JSON parser
 * (`@streamparser/json`), so a manifest of a million entries is never held whole. A page stops
 * reading once it has its entries; its time grows with its offset.
 *
 * @module
 */

import { JSONParser } from "@streamparser/json";
import { entrySchema, type ManifestEntry } from "../../core/backup/manifest.ts";
import { RepositoryError } from "../errors.ts";
import { listSnapshotIds, repoPaths, type Repository } from "./repository.ts";

/** Most entries one page may hold. */
export const ENTRIES_PAGE_MAX = 1000;
/** Entries in a page when no limit is asked for. */
export const ENTRIES_PAGE_DEFAULT = 100;

/** What a listing shows of one snapshot. */
export interface SnapshotSummary {
  /** The snapshot id. */
  readonly id: string;
  /** `fs` or `db` (absent when the manifest could not be read that far). */
  readonly kind?: string;
  /** What was backed up. */
  readonly source?: string;
  /** The snapshot it is incremental to, or null for a full one. */
  readonly parent?: string | null;
  /** When it was taken, ms since the epoch. */
  readonly createdMs?: number;
  /** Size of its archive. */
  readonly archiveBytes?: number;
  /** Archive bytes that went through each channel. */
  readonly channelBytes?: { readonly storage: number; readonly network: number };
  /** Entries of each type, and the bytes of the files. */
  readonly entries: { files: number; dirs: number; symlinks: number; fileBytes: number };
  /** Paths of the parent that are gone. */
  readonly deleted: number;
  /** Set when the manifest could not be read whole: what went wrong. */
  readonly problem?: string;
}

/** One page of a snapshot's entries. */
export interface EntriesPage {
  /** The snapshot id. */
  readonly snapshot: string;
  /** Index of the page's first entry. */
  readonly offset: number;
  /** The entries, in manifest order. */
  readonly entries: ManifestEntry[];
  /** The offset of the next page, or null after the last entry. */
  readonly nextOffset: number | null;
}

const SUMMARY_FIELDS = ["kind", "source", "parent", "createdMs", "archiveBytes", "channelBytes"];

interface Parsed {
  readonly key: string | number | undefined;
  readonly value: unknown;
  readonly container: string | number | undefined;
}

/**
 * Streams a manifest file through the parser, calling `onValue` for the top-level fields named
 * in `paths` and for each item of `entries` and `deleted`. `onValue` returns false to stop.
 */
async function streamManifest(
  path: string,
  paths: string[],
  onValue: (parsed: Parsed) => boolean | void,
): Promise<void> {
  const parser = new JSONParser({ paths, keepStack: false });
  let stopped = false;
  let failure: unknown;
  parser.onValue = ({ key, value, stack }) => {
    if (stopped) return;
    if (onValue({ key, value, container: stack[1]?.key }) === false) stopped = true;
  };
  parser.onError = (error) => (failure ??= error);
  const file = await Deno.open(path, { read: true });
  try {
    // Bounded by the file's size (at most MANIFEST_FILE_BYTES_MAX is ever read by callers).
    for await (const chunk of file.readable) {
      parser.write(chunk);
      if (stopped || failure !== undefined) break;
    }
  } finally {
    try {
      file.close();
    } catch {
      // the readable closed it at its end
    }
  }
  if (!stopped && failure === undefined && !parser.isEnded) {
    failure = new Error("the manifest ends before its JSON does (cut off?)");
  }
  if (failure !== undefined) throw failure;
}

/**
 * A summary of one snapshot: its fields without the entries, and counts of the entries.
 *
 * @param repo the repository
 * @param id the snapshot id
 * @returns the summary; `problem` says what went wrong if the manifest cannot be read whole
 */
export async function snapshotSummary(repo: Repository, id: string): Promise<SnapshotSummary> {
  const fields: Record<string, unknown> = {};
  const entries = { files: 0, dirs: 0, symlinks: 0, fileBytes: 0 };
  let deleted = 0;
  const paths = [...SUMMARY_FIELDS.map((f) => `$.${f}`), "$.entries.*", "$.deleted.*"];
  try {
    await streamManifest(repoPaths.manifest(repo, id), paths, ({ key, value, container }) => {
      if (container === "deleted") deleted++;
      else if (container !== "entries") fields[String(key)] = value;
      else {
        const entry = value as { type?: unknown; sizeBytes?: unknown };
        if (entry.type === "file") {
          entries.files++;
          entries.fileBytes += typeof entry.sizeBytes === "number" ? entry.sizeBytes : 0;
        } else if (entry.type === "dir") entries.dirs++;
        else if (entry.type === "symlink") entries.symlinks++;
      }
    });
  } catch (error) {
    return { id, ...fields, entries, deleted, problem: `manifest of ${id}: ${messageOf(error)}` };
  }
  return { id, ...fields, entries, deleted } as SnapshotSummary;
}

/** What retention needs to know of a snapshot: who it belongs to and when it was taken. */
export interface SnapshotHead {
  /** The snapshot id. */
  readonly id: string;
  /** `fs` or `db`. */
  readonly kind: "fs" | "db";
  /** What was backed up. */
  readonly source: string;
  /** When it was taken, ms since the epoch. */
  readonly createdMs: number;
}

const HEAD_FIELDS = ["kind", "source", "createdMs"] as const;

/**
 * Reads a snapshot's kind, source and time, stopping as soon as it has them (they come before
 * the entries in every manifest lanfree writes, so a large manifest is not read through).
 *
 * @param repo the repository
 * @param id the snapshot id
 * @returns the head
 * @throws {RepositoryError} `corrupt` when the manifest cannot be read or lacks a field
 */
export async function readSnapshotHead(repo: Repository, id: string): Promise<SnapshotHead> {
  const fields: Record<string, unknown> = {};
  const path = repoPaths.manifest(repo, id);
  try {
    await streamManifest(path, HEAD_FIELDS.map((f) => `$.${f}`), ({ key, value }) => {
      fields[String(key)] = value;
      return HEAD_FIELDS.some((field) => !(field in fields));
    });
  } catch (error) {
    throw new RepositoryError("corrupt", `manifest ${path}: ${messageOf(error)}`, { cause: error });
  }
  const { kind, source, createdMs } = fields;
  if (
    (kind !== "fs" && kind !== "db") || typeof source !== "string" ||
    !Number.isSafeInteger(createdMs)
  ) {
    throw new RepositoryError(
      "corrupt",
      `manifest ${path} has no valid kind, source and createdMs (${JSON.stringify(fields)})`,
    );
  }
  return { id, kind, source, createdMs: createdMs as number };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Summaries of every snapshot, oldest first; memory bounded by one entry at a time.
 *
 * @param repo the repository
 * @returns the summaries
 */
export async function listSnapshotSummaries(repo: Repository): Promise<SnapshotSummary[]> {
  const summaries: SnapshotSummary[] = [];
  for (const id of await listSnapshotIds(repo)) summaries.push(await snapshotSummary(repo, id));
  return summaries;
}

/**
 * One page of a snapshot's entries, in manifest order (sorted by path).
 *
 * @param repo the repository
 * @param id the snapshot id
 * @param offset the first entry's index
 * @param limit how many entries, at most {@link ENTRIES_PAGE_MAX}
 * @returns the page
 * @throws {RepositoryError} `unknown-snapshot`, or `corrupt` for a manifest that cannot be read
 */
export async function readEntriesPage(
  repo: Repository,
  id: string,
  offset: number,
  limit: number,
): Promise<EntriesPage> {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset must be a non-negative integer, got ${offset}`);
  }
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > ENTRIES_PAGE_MAX) {
    throw new RangeError(`limit must be 1..${ENTRIES_PAGE_MAX}, got ${limit}`);
  }
  const ids = new Set(await listSnapshotIds(repo));
  if (!ids.has(id)) {
    throw new RepositoryError("unknown-snapshot", `repository ${repo.path} has no snapshot ${id}`);
  }
  const entries: ManifestEntry[] = [];
  let index = 0;
  let more = false;
  try {
    await streamManifest(repoPaths.manifest(repo, id), ["$.entries.*"], ({ value }) => {
      if (index++ < offset) return true;
      if (entries.length === limit) {
        more = true;
        return false;
      }
      const parsed = entrySchema.safeParse(value);
      if (!parsed.success) throw new Error(`entry ${index - 1} is invalid`);
      entries.push(parsed.data);
      return true;
    });
  } catch (error) {
    throw new RepositoryError("corrupt", `manifest of ${id}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return { snapshot: id, offset, entries, nextOffset: more ? offset + limit : null };
}
