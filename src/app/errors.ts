/**
 * The error family of the backup product. Every failure a caller can meet in the repository,
 * a backup, a restore or a verify is a {@link BackupError} subclass with a `code`, and its
 * message names the thing concerned (a path, a snapshot id, a repository). CLIs print the
 * message alone, without a stack trace.
 *
 * @module
 */

/** Codes of {@link RepositoryError}. */
export type RepositoryErrorCode =
  | "not-found" // no repository at the path
  | "not-a-repository" // a directory without the format marker
  | "other-format" // a marker of another format or version
  | "corrupt" // unreadable marker, invalid manifest, missing archive
  | "locked" // another backup holds the lock and did not let go in time
  | "unknown-snapshot" // no snapshot with that id (or no snapshot at all for "latest")
  | "bad-commit" // the manifest handed to commit does not match what was written
  | "closed"; // a writer used after commit or abort

/** Codes of {@link RestoreError}. */
export type RestoreErrorCode =
  | "target-not-empty"
  | "unsafe-path" // an entry would land outside the target
  | "hash-mismatch"
  | "size-mismatch"
  | "missing-data" // an archive lacks a file the manifest says it holds
  | "bad-archive" // an archive is not a readable tar
  | "bad-plan" // the subpath is not a valid path, or not in the snapshot
  | "read-failed" // the repository could not be read (an I/O error, a damaged member header)
  | "write-failed" // the target could not be written (ENOSPC, EACCES, EROFS ...)
  | "incomplete"; // a restore finished but some entries could not be restored (listed)

/** Codes of {@link SourceError}. */
export type SourceErrorCode =
  | "not-found"
  | "not-a-directory"
  | "not-a-file"
  | "too-large"
  | "unreadable"
  | "is-repository"; // the source is the repository the backup writes to

/** Base class: every backup-side error has a code. */
export class BackupError extends Error {
  /** The machine-readable reason. */
  readonly code: string;
  /**
   * Makes the error.
   *
   * @param code the machine-readable reason
   * @param message what happened, naming the path, snapshot or repository concerned
   * @param options the underlying cause, if any
   */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BackupError";
    this.code = code;
  }
}

/** A repository cannot be opened, read or written as asked. */
export class RepositoryError extends BackupError {
  /** The machine-readable reason. */
  declare readonly code: RepositoryErrorCode;
  /**
   * Makes the error.
   *
   * @param code the machine-readable reason
   * @param message what happened, naming the path, snapshot or repository concerned
   * @param options the underlying cause, if any
   */
  constructor(code: RepositoryErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "RepositoryError";
  }
}

/** A restore or a verify found something it must not write or accept. */
export class RestoreError extends BackupError {
  /** The machine-readable reason. */
  declare readonly code: RestoreErrorCode;
  /**
   * Makes the error.
   *
   * @param code the machine-readable reason
   * @param message what happened, naming the path, snapshot or repository concerned
   * @param options the underlying cause, if any
   */
  constructor(code: RestoreErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "RestoreError";
  }
}

/** The source of a backup cannot be read as a whole. */
export class SourceError extends BackupError {
  /** The machine-readable reason. */
  declare readonly code: SourceErrorCode;
  /**
   * Makes the error.
   *
   * @param code the machine-readable reason
   * @param message what happened, naming the path, snapshot or repository concerned
   * @param options the underlying cause, if any
   */
  constructor(code: SourceErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "SourceError";
  }
}
