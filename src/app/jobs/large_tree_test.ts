/**
 * Issue 9 item 8 at a scale a test can afford: a large tree on the storage channel with a
 * short lease. Hosts renew their lease on a timer; any phase that holds a host's thread for
 * longer than the lease (parsing, planning or sending a manifest whole, as lanfree once did)
 * makes its peer reclaim it, and the backup fails with "lost its lease". Manifests now go a
 * line at a time and every long loop lets the timers run.
 */

import assert from "node:assert/strict";
import { runBackupJob } from "./backup_job.ts";
import { withTempDir } from "../_testing.ts";

const DIRS = 60;
const FILES_PER_DIR = 500;
/** A lease far shorter than the jobs' 2 s, and far longer than any slice of work now. */
const LEASE_MS = 250;

function makeTree(root: string): void {
  const empty = new Uint8Array(0);
  for (let d = 0; d < DIRS; d++) {
    Deno.mkdirSync(`${root}/dir-${d}`, { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      Deno.writeFileSync(`${root}/dir-${d}/file-${f}.txt`, empty);
    }
  }
}

Deno.test("30,000 entries, full then incremental, on the storage channel with a 250 ms lease: no host loses its lease", async () => {
  await withTempDir(async (dir) => {
    makeTree(`${dir}/src`);
    const options = {
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      mode: "fs" as const,
      channel: "storage" as const,
      leaseMs: LEASE_MS,
    };
    const full = await runBackupJob({ ...options, incremental: false });
    assert.equal(full.dataPath, "storage");
    assert.equal(full.filesTotal, DIRS * FILES_PER_DIR);
    const again = await runBackupJob({ ...options, incremental: true });
    assert.equal(again.parent, full.snapshot);
    assert.equal(again.files, 0);
    assert.equal(again.filesTotal, DIRS * FILES_PER_DIR);
  });
});
