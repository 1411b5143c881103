import { registerSuite } from "./_deno.ts";
import { denoBackupHarness } from "./backup_harness.ts";
import { restoreReliabilitySuite } from "./reliability_restore.ts";
import { restoreSnapshot } from "../src/app/restore.ts";

/** What the hook throws to stop a restore the way a crash would (not a typed error). */
class SimulatedCrash extends Error {}

registerSuite(restoreReliabilitySuite({
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
}));
