/**
 * A consistent copy of a SQLite database that may be in use, made with SQLite's online backup
 * API (`node:sqlite` `backup()`): the copy is a single database file (no WAL) that can be
 * packed like any other file.
 *
 * @module
 */

import { backup, DatabaseSync } from "node:sqlite";
import type { SourceEntry } from "../../core/backup/plan.ts";
import { SourceError } from "../errors.ts";

/** Pages copied per step of the online backup (other writers may run between steps). */
const BACKUP_PAGES_PER_STEP = 4096;

/** A database copy ready to pack. */
export interface DatabaseCopy {
  /** Directory holding the copy: pack `entry` from here. */
  readonly root: string;
  /** The copy as a single file entry, named after the database file. */
  readonly entry: SourceEntry & { type: "file" };
  /** Removes the copy. */
  remove(): Promise<void>;
}

function baseName(path: string): string {
  const name = path.split("/").filter((s) => s !== "").pop();
  return name === undefined || name === "." || name === ".." ? "database.sqlite" : name;
}

/**
 * Opens a database read-only after checking it is a readable SQLite file.
 *
 * @param dbPath the database file
 * @returns the open connection (close it)
 * @throws {SourceError} `not-found`, `not-a-file` or `unreadable`, naming the file
 */
export async function openDatabaseSource(dbPath: string): Promise<DatabaseSync> {
  const info = await Deno.stat(dbPath).catch((error) => {
    const code = error instanceof Deno.errors.NotFound ? "not-found" : "unreadable";
    throw new SourceError(
      code,
      `database ${dbPath}: ${error instanceof Error ? error.message : error}`,
    );
  });
  if (!info.isFile) throw new SourceError("not-a-file", `database ${dbPath} is not a file`);
  try {
    const db = new DatabaseSync(dbPath, { readOnly: true });
    db.prepare("SELECT count(*) FROM sqlite_master").get();
    return db;
  } catch (error) {
    throw new SourceError(
      "unreadable",
      `database ${dbPath} is not a readable SQLite database: ${error}`,
    );
  }
}

/**
 * Copies `dbPath` consistently into a new temporary directory.
 *
 * @param dbPath the SQLite database file (may be open and written by others)
 * @param nowMs mtime given to the copy's entry (the time of the copy)
 * @returns the copy, its entry, and a remover
 * @throws {SourceError} when the file is missing or not a SQLite database
 *
 * @example Copying a database
 * ```ts
 * import assert from "node:assert/strict";
 * import { DatabaseSync } from "node:sqlite";
 * import { copyDatabase } from "./db_snapshot.ts";
 * const dir = await Deno.makeTempDir();
 * const db = new DatabaseSync(`${dir}/app.db`);
 * db.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
 * const copy = await copyDatabase(`${dir}/app.db`);
 * assert.equal(copy.entry.path, "app.db");
 * await copy.remove();
 * db.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function copyDatabase(dbPath: string, nowMs = Date.now()): Promise<DatabaseCopy> {
  const db = await openDatabaseSource(dbPath);
  const root = await Deno.makeTempDir({ prefix: "lanfree-db-" });
  const name = baseName(dbPath);
  const remove = () => Deno.remove(root, { recursive: true }).catch(() => {});
  try {
    await backup(db, `${root}/${name}`, { rate: BACKUP_PAGES_PER_STEP });
    const mtime = new Date(nowMs);
    await Deno.utime(`${root}/${name}`, mtime, mtime);
    const info = await Deno.stat(`${root}/${name}`);
    const mode = (info.mode ?? 0o644) & 0o7777;
    return {
      root,
      entry: {
        type: "file",
        path: name,
        sizeBytes: info.size,
        mode,
        mtimeMs: nowMs,
        dev: info.dev,
        ino: info.ino ?? undefined,
      },
      remove,
    };
  } catch (error) {
    await remove();
    throw new SourceError("unreadable", `database ${dbPath}: backup failed: ${error}`, {
      cause: error,
    });
  } finally {
    db.close();
  }
}
