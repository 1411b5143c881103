/**
 * Shared plumbing of the repository CLIs (restore, verify, consolidate, ...): strict argument
 * parsing and one clear line per failure (no stack trace), with exit codes 0 ok, 1 failed, 2 bad
 * usage.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
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

/** The options of a CLI that acts on a repository's snapshot: `--repo`, `--snapshot`, `--json`. */
export const REPO_SNAPSHOT_OPTIONS = {
  repo: { type: "string" },
  snapshot: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean" },
} as const;

/** The values `parseArgs` gives for `options` under strict parsing without positionals. */
export type CliValues<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>
>["values"];

/**
 * Parses a CLI's arguments strictly: an unknown flag, a missing value or a missing `required`
 * option is a usage error (printed with the usage), and `--help` prints the usage.
 *
 * @param args command-line arguments
 * @param options the `parseArgs` options (with `help`)
 * @param usage the usage text
 * @param io where to print
 * @param required options that must be given (unless `--help` is)
 * @returns the values, or the exit code to return at once (0 after `--help`, 2 bad usage)
 */
export function parseCliArgs<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
  usage: string,
  io: Io,
  required: readonly (keyof O & string)[] = [],
): CliValues<O> | number {
  let values: CliValues<O>;
  try {
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    return reportUsage(error, usage, io);
  }
  const given = values as Record<string, unknown>;
  if (given.help === true) {
    io.out(usage);
    return 0;
  }
  const missing = required.filter((name) => given[name] === undefined);
  if (missing.length === 0) return values;
  return reportUsage(`missing ${missing.map((name) => `--${name}`).join(", ")}`, usage, io);
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
