/**
 * Issue 17: a corruption inside ring bytes is allowed to reach the receiver (the STP core checks
 * every control word it reads, not the data it carries); the session's per-frame CRC-32 must
 * catch it, so the backup fails with the hash error rather than committing.
 */

import assert from "node:assert/strict";
import { jobRegionConfig, runBackupJob } from "../jobs/backup_job.ts";
import { listSnapshotIds, openRepository } from "../repository/repository.ts";
import { verifyRepository } from "../repository/verify.ts";
import { attachRegion, formatRegion } from "../../core/stp/region.ts";
import { BlockState, F, stateOf } from "../../core/stp/block.ts";
import { blockWord, extentOffset, type RegionLayout } from "../../core/stp/layout.ts";

/** What every source file is filled with, so a flipped byte is certainly file content. */
const FILL = 0xab;
/** Bytes on each side of a flipped byte that must be file content too. */
const MARGIN = 64;
/** Most flips during one backup (each one a byte of file content in flight). */
const FLIPS_MAX = 64;
/** How long the corruptor watches the rings at most, ms. */
const CORRUPT_FOR_MS = 60_000;

/** The in-flight bytes of the busiest connected ring: producer block, offset and count. */
function inFlight(words: Int32Array, layout: RegionLayout) {
  const load = (block: number, field: number) =>
    Atomics.load(words, blockWord(layout, block, field));
  let best: { offset: number; head: number; used: number } | undefined;
  for (let block = 0; block < layout.blockCount; block++) {
    if (stateOf(load(block, F.state)) !== BlockState.connected) continue;
    const peer = load(block, F.peerIndex);
    const tail = load(block, F.txTail);
    const head = load(peer, F.rxHead);
    const used = (tail - head) >>> 0;
    if (used <= 2 * MARGIN || used > layout.extentBytes || (best?.used ?? 0) >= used) continue;
    const offset = extentOffset(layout, load(block, F.txExtent) - 1);
    best = { offset, head, used };
  }
  return best;
}

/**
 * Flips bytes of file content while they sit in a ring (read by nobody yet), as a stray write
 * by another process mapping the region would, until the job ends or {@link FLIPS_MAX} flips.
 */
async function corruptWhileRunning(
  buffer: SharedArrayBuffer,
  layout: RegionLayout,
  running: () => boolean,
): Promise<number> {
  const words = new Int32Array(buffer);
  const bytes = new Uint8Array(buffer);
  let flips = 0;
  const deadlineMs = Date.now() + CORRUPT_FOR_MS;
  for (let polls = 0; running() && flips < FLIPS_MAX && Date.now() < deadlineMs; polls++) {
    const ring = inFlight(words, layout);
    if (ring !== undefined) {
      const at = ring.offset + ((ring.head + ring.used - MARGIN) & (layout.extentBytes - 1));
      const content = bytes.subarray(at - MARGIN, at + MARGIN).every((b) => b === FILL);
      if (content && at - MARGIN >= ring.offset) {
        bytes[at] = FILL ^ 0xff;
        flips++;
      }
    }
    // Let the job's own messages through now and then (the hosts run in Workers).
    if (polls % 64 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return flips;
}

Deno.test({
  name:
    "a byte corrupted inside a ring during a backup fails it with the hash error, nothing is committed",
  async fn() {
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-ring-flip-" }));
    try {
      await Deno.mkdir(`${dir}/src`);
      for (let i = 0; i < 4; i++) {
        await Deno.writeFile(`${dir}/src/file ${i}.bin`, new Uint8Array(6 << 20).fill(FILL));
      }
      const config = jobRegionConfig(64, 64, 30_000);
      const region = formatRegion(config, crypto.randomUUID());
      if (!region.ok) throw new Error(region.message);
      const layout = attachRegion(region.value);
      if (!layout.ok) throw new Error(layout.message);
      let done = false;
      const job = runBackupJob({
        source: `${dir}/src`,
        repo: `${dir}/repo`,
        mode: "fs",
        incremental: false,
        channel: "storage",
        region: region.value,
      }).then((summary) => summary, (error: Error) => error).finally(() => (done = true));
      const flips = await corruptWhileRunning(region.value, layout.value, () => !done);
      const outcome = await job;
      assert.ok(flips > 0, "no byte of file content was caught in flight");
      if (!(outcome instanceof Error)) {
        const verified = await verifyRepository(`${dir}/repo`);
        const found = verified.problems.map((problem) => problem.message).join("; ");
        assert.fail(`the backup committed snapshot ${outcome.snapshot}; verify found: ${found}`);
      }
      assert.match(outcome.message, /CRC-32 check: the received bytes hash to/);
      const repo = await openRepository(`${dir}/repo`);
      assert.deepEqual(await listSnapshotIds(repo), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
