/**
 * Helpers of the region CLI tests: running `deno task region` as a subprocess and a scratch
 * directory under /dev/shm that must be left empty.
 *
 * @module
 */

import { makeTempDirectory, removeDirectory, unlinkFile } from "../src/adapters/_libc_files.ts";
import { cleanUpOnSignal, removeQuietly, sweepStaleScratch } from "./_leftovers.ts";

/** The region CLI script. */
export const REGION_SCRIPT = new URL("./region.ts", import.meta.url).pathname;
/** The permissions of `deno task region`. */
export const REGION_FLAGS = ["--allow-read", "--allow-write", "--allow-ffi", "--allow-env"];

/** Runs `deno task region ...` (as the task does) and collects its output. */
export async function region(
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: string; stderr: string; stdoutBytes: Uint8Array }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...REGION_FLAGS, REGION_SCRIPT, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const output = await child.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: output.code,
    stdout: decode(output.stdout),
    stderr: decode(output.stderr),
    stdoutBytes: output.stdout,
  };
}

/**
 * A fresh directory under /dev/shm for region files; `body` returns the files it left. Stale
 * scratch directories of killed runs are swept first, and a SIGTERM or SIGINT while `body`
 * runs removes this one before the process exits (see `_leftovers.ts`).
 */
export async function withShmDirectory(
  body: (directory: string) => Promise<string[] | void> | string[] | void,
): Promise<void> {
  sweepStaleScratch();
  const directory = makeTempDirectory("/dev/shm/lanfree-test-");
  const forget = cleanUpOnSignal(() => removeQuietly(directory));
  let files: string[] | void;
  try {
    files = await body(directory);
  } catch (error) {
    removeQuietly(directory);
    throw error;
  } finally {
    forget();
  }
  for (const name of files ?? []) unlinkFile(`${directory}/${name}`);
  removeDirectory(directory); // ENOTEMPTY if anything else was left
}
