/**
 * The restore-crash harness over lanfree's own restore: the "crash" is a hook that throws at the
 * chosen create step, leaving the target exactly as a killed process would (no cleanup runs).
 *
 * @module
 */

import { denoBackupHarness } from "./backup_harness.ts";
import type { RestoreCrashHarness } from "./reliability_restore.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";

/** What the hook throws to stop a restore the way a crash would (not a typed error). */
class SimulatedCrash extends Error {}

/** lanfree's restore, with a crash injected at the `dieAtCreate`-th entry it creates. */
export const denoRestoreCrashHarness: RestoreCrashHarness = {
  ...denoBackupHarness,
  restore: async (repo, snapshot, target, options) => {
    let creates = 0;
    try {
      await restoreSnapshot({
        repo,
        snapshot,
        target,
        overwrite: options.overwrite,
        hooks: {
          beforeCreate: () => {
            if (++creates === options.dieAtCreate) throw new SimulatedCrash("died");
            return Promise.resolve();
          },
        },
      });
      return { died: false };
    } catch (error) {
      if (error instanceof SimulatedCrash) return { died: true };
      throw error;
    }
  },
};
