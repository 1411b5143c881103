import assert from "node:assert/strict";
import { formatRegion } from "../core/stp/region.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import { regionUsage } from "../core/stp/usage.ts";
import { sharedArrayBufferRegions } from "./shm_region.ts";
import { createStorageSockets } from "./shm.ts";
import type { WorkerHostJob as HostJob } from "./shm_host_worker.ts";
import { startHost } from "./shm_workers.ts";
import { attachRegion } from "../core/stp/region.ts";
import { atomicsMemory } from "./shm_memory.ts";

const MIB = 1 << 20;
const REPORT_TIMEOUT_MS = 240_000;

function region(
  pairs: number,
  extentBytes: number,
  config: Partial<RegionConfig> = {},
): SharedArrayBuffer {
  const made = formatRegion({
    stgs: [{ id: 1, extentCount: 2 * pairs, ephemeralPortMin: 30000, ephemeralPortMax: 30100 }],
    extentBytes,
    blockCount: 4 * pairs,
    hostCount: 2 * pairs + 1,
    ioTimeoutMs: 10_000,
    leaseMs: 1000,
    backlogMax: 2,
    ...config,
  }, crypto.randomUUID());
  if (!made.ok) throw new Error(made.message);
  return made.value;
}

function job(
  buffer: SharedArrayBuffer,
  fields: Partial<HostJob> & Pick<HostJob, "job">,
): HostJob {
  return { region: buffer, stg: 1, port: 10, totalBytes: 0, chunkBytes: MIB, rounds: 0, ...fields };
}

function usage(buffer: SharedArrayBuffer) {
  const layout = attachRegion(buffer);
  if (!layout.ok) throw new Error(layout.message);
  return regionUsage(atomicsMemory(buffer).memory, layout.value);
}

async function transfer(buffer: SharedArrayBuffer, pair: number, totalBytes: number) {
  const port = 10 + pair;
  const receiver = startHost(job(buffer, { job: "receive", port }));
  assert.equal((await receiver.next("listening", REPORT_TIMEOUT_MS)).type, "listening");
  const sender = startHost(job(buffer, { job: "send", port, totalBytes }));
  const [sent, received] = await Promise.all([
    sender.next("done", REPORT_TIMEOUT_MS),
    receiver.next("done", REPORT_TIMEOUT_MS),
  ]);
  assert.equal(sent.type, "done", JSON.stringify(sent));
  assert.equal(received.type, "done", JSON.stringify(received));
  if (sent.type !== "done" || received.type !== "done") return;
  assert.equal(received.bytes, totalBytes);
  assert.equal(received.sha256, sent.sha256);
}

Deno.test("two worker hosts exchange 1 GiB through the region with matching SHA-256", async () => {
  const buffer = region(1, 8 * MIB);
  await transfer(buffer, 0, 1024 * MIB);
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
});

Deno.test("eight pairs of worker hosts transfer at once on one region", async () => {
  const buffer = region(8, MIB);
  await Promise.all(Array.from({ length: 8 }, (_, pair) => transfer(buffer, pair, 24 * MIB)));
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
});

Deno.test("a host terminated mid-transfer makes its peer fail and its blocks are reclaimed", async () => {
  const buffer = region(1, MIB, { hostCount: 4 });
  const receiver = startHost(job(buffer, { job: "receive" }));
  await receiver.next("listening", REPORT_TIMEOUT_MS);
  const sender = startHost(
    job(buffer, { job: "send", totalBytes: Number.MAX_SAFE_INTEGER }),
  );
  await receiver.next("progress", REPORT_TIMEOUT_MS);
  sender.terminate();
  const startMs = Date.now();
  const failed = await receiver.next("failed", REPORT_TIMEOUT_MS);
  const detectMs = Date.now() - startMs;
  assert.ok(
    failed.type === "failed" && ["ECONNRESET", "ETIMEDOUT"].includes(failed.code),
    JSON.stringify(failed),
  );
  assert.ok(detectMs <= 10_000 + 2000, `detected after ${detectMs} ms, the timeout is 10000 ms`);
  await new Promise((resolve) => setTimeout(resolve, 300)); // let the receiver close and dispose
  const sweeper = createStorageSockets({ region: buffer });
  sweeper.reclaim();
  await sweeper.dispose();
  assert.deepEqual(usage(buffer), { blocks: [], ports: [], extents: [] });
  assert.ok(sharedArrayBufferRegions.name.length > 0);
});
