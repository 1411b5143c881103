/**
 * Shared plumbing of the restore and verify CLIs: strict argument parsing and one clear line
 * per failure (no stack trace), with exit codes 0 ok, 1 failed, 2 bad usage.
 *
 * @module
 */

import { BackupError } from "./errors.ts";

/** Exit code for bad usage (unknown flag, missing value). */
export const EXIT_USAGE = 2;
/** Exit code for a failed run (bad repository, unknown snapshot, hash mismatch). */
export const EXIT_FAILED = 1;

/** Output streams, injectable for tests. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** The process's stdout and stderr. */
export const consoleIo: Io = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/**
 * Prints a usage problem (unknown flag, missing value) and the usage text.
 *
 * @param error what parseArgs threw, or a message
 * @param usage the usage text
 * @param io where to print
 * @returns the usage exit code
 */
export function reportUsage(error: unknown, usage: string, io: Io): number {
  io.err(`error: ${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
  return EXIT_USAGE;
}

/**
 * Turns a failure into one line on stderr and an exit code.
 *
 * @param error what was thrown
 * @param io where to print
 * @returns the exit code
 */
export function reportFailure(error: unknown, io: Io): number {
  if (error instanceof BackupError) io.err(`error: ${error.message}`);
  else if (error instanceof Error) io.err(`error: ${error.name}: ${error.message}`);
  else io.err(`error: ${String(error)}`);
  return EXIT_FAILED;
}
