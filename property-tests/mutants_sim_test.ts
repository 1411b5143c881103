/**
 * The simulator catches real bugs: each test runs the simulated world (the real handshake,
 * session, backup and restore) with one part deliberately broken, and the invariants checked
 * after the seeds must report it. The same seeds with nothing broken hold every invariant.
 */

import assert from "node:assert/strict";
import type { RepoFs } from "../src/app/repository/repo_fs.ts";
import type { Sockets } from "../src/core/dispatch/sockets.ts";
import { kindOfDescriptor } from "../src/core/dispatch/descriptor.ts";
import { simulateSeed } from "../src/sim/simulate.ts";
import type { FaultKind, WorldHooks } from "../src/sim/world.ts";

/** Seeds 1..count under `faults`, with and without the mutant: the violations of each. */
async function violationsOf(hooks: WorldHooks, faults: readonly FaultKind[], count: number) {
  const clean: string[] = [];
  const broken: string[] = [];
  for (let seed = 1; seed <= count; seed++) {
    clean.push(...(await simulateSeed(seed, faults)).violations.map((v) => `${seed}: ${v}`));
    broken.push(
      ...(await simulateSeed(seed, faults, hooks)).violations.map((v) => `${seed}: ${v}`),
    );
  }
  return { clean, broken };
}

/** A repository file system whose calls in `skip` do nothing (and report success). */
function skipping(skip: { fileSync?: boolean; dirSync?: boolean }): (disk: RepoFs) => RepoFs {
  return (disk) => ({
    async create(path) {
      const file = await disk.create(path);
      if (!skip.fileSync) return file;
      return {
        write: (bytes) => file.write(bytes),
        sync: () => Promise.resolve(),
        syncData: () => Promise.resolve(),
        close: () => file.close(),
      };
    },
    rename: (from, to) => disk.rename(from, to),
    remove: (path, options) => disk.remove(path, options),
    syncDir: (path) => skip.dirSync ? Promise.resolve() : disk.syncDir(path),
  });
}

Deno.test("the simulator catches a repository writer that never syncs its files", async () => {
  // A crash after the commit point keeps the renames (their directory was synced) and drops the
  // archive's unsynced bytes: a committed snapshot that no longer matches its source.
  const { clean, broken } = await violationsOf({ repoFs: skipping({ fileSync: true }) }, [
    "crash",
  ], 40);
  assert.deepEqual(clean, []);
  assert.ok(broken.some((v) => /committed snapshot .* (differs|cannot be restored)/.test(v)));
});

Deno.test("the simulator catches a repository writer that never syncs the snapshot directory", async () => {
  // The client hears `committed`, then a crash drops the renames: the client believes in a
  // snapshot the repository does not hold.
  const { clean, broken } = await violationsOf({ repoFs: skipping({ dirSync: true }) }, [
    "crash",
  ], 40);
  assert.deepEqual(clean, []);
  assert.ok(broken.some((v) => /client believes the backup committed/.test(v)), broken.join("\n"));
});

Deno.test("the simulator catches an agent that never closes its storage descriptors", async () => {
  const leaky = (host: string, sockets: Sockets): Sockets =>
    host !== "agent" ? sockets : {
      ...sockets,
      close: (fd) => kindOfDescriptor(fd) === "storage" ? Promise.resolve() : sockets.close(fd),
    };
  const { clean, broken } = await violationsOf({ sockets: leaky }, [], 3);
  assert.deepEqual(clean, []);
  assert.ok(broken.some((v) => /left behind: .* holds control blocks/.test(v)), broken.join("\n"));
});
