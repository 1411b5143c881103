/**
 * Which file layer backup and restore use: the native one (`fs_native.ts`: libc through FFI,
 * relative to held directory descriptors) when FFI is allowed, else Deno's path-based APIs with
 * their documented limits. The fallback is announced once per process, on stderr.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { nativeFsAvailable } from "../adapters/fs_native.ts";

let announced = false;

/** What the path-based fallback cannot do (docs/backup.md has the details). */
export const PATH_BASED_LIMITS =
  "names that are not UTF-8 are skipped, sparse files are stored whole, extended attributes " +
  "are not kept, and restore checks parents by path (a symlink swapped in between a check and " +
  "a write is refused afterwards, not prevented)";

/**
 * Whether to use the native file layer: true when it is available and not turned off.
 *
 * @param wanted false forces the path-based layer (tests of the fallback)
 * @returns whether the native layer is used
 */
export function useNativeFs(wanted = true): boolean {
  if (!wanted) return false;
  const available = nativeFsAvailable();
  if (available === true) return true;
  if (!announced) {
    announced = true;
    console.error(
      `lanfree: the native file layer is not available (${available}); working by path ` +
        `instead: ${PATH_BASED_LIMITS}. Grant --allow-ffi to lift these limits.`,
    );
  }
  return false;
}

/** Time one synchronous stretch may take before it lets the event loop run. */
const SLICE_MS = 20;

/**
 * Lets timers and I/O run between synchronous steps (a host renews its storage lease on a
 * timer): `await yielder.maybe()` in a loop gives the event loop a turn every {@link SLICE_MS}.
 * The turn is a `setImmediate`: the event loop runs due timers and polls I/O, then comes straight
 * back (about 20 µs). A `setTimeout(0)` waits for the timer clock instead (about 2.3 ms a turn
 * here, measured: over a tenth of a restore's wall time was spent idle in those turns).
 */
export class Yielder {
  #lastMs = performance.now();

  /** Whether the current slice has run out (a loop may skip the `await` of {@link maybe} till then). */
  due(): boolean {
    return performance.now() - this.#lastMs >= SLICE_MS;
  }

  /** Yields an event-loop turn once the current slice has run out. */
  async maybe(): Promise<void> {
    if (!this.due()) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.#lastMs = performance.now();
  }
}
