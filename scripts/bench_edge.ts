/**
 * Bench row `edge-cold-start-ms`: the median time from starting workerd (Cloudflare's Workers
 * runtime) with lanfree's bundle to the end of its first response, over several fresh starts.
 *
 * @module
 */

import type { BenchRow } from "./bench.ts";
import { buildBundle } from "./bundle.ts";
import { startEdgeWorker } from "./_workerd.ts";

/**
 * Starts workerd `starts` times around one freshly built bundle.
 *
 * @param starts how many cold starts to time (default 7)
 * @returns the median time to first response, ms
 */
export async function benchEdgeColdStart(starts = 7): Promise<BenchRow> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bench-edge-" });
  try {
    const built = await buildBundle(dir);
    const timesMs: number[] = [];
    for (let start = 0; start < starts; start++) {
      const workerDir = await Deno.makeTempDir({ dir, prefix: "start-" });
      const edge = await startEdgeWorker({
        dir: workerDir,
        bundlePath: built.modulePath,
        token: crypto.randomUUID(),
      });
      timesMs.push(edge.firstResponseMs);
      await edge.stop();
    }
    timesMs.sort((a, b) => a - b);
    return { name: "edge-cold-start-ms", value: timesMs[Math.floor(starts / 2)]!, unit: "ms" };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
