import assert from "node:assert/strict";
import { jobRegionConfig, runBackupJob } from "./backup_job.ts";
import { attachRegion, formatRegion } from "../../core/stp/region.ts";

/** Pages of 4 KiB in `bytes[from, from + length)` holding any byte that is not zero. */
function pagesWritten(bytes: Uint8Array, from: number, length: number): number {
  const pageBytes = 4096;
  let pages = 0;
  for (let page = from; page < from + length; page += pageBytes) {
    const words = new Int32Array(bytes.buffer, bytes.byteOffset + page, pageBytes / 4);
    if (words.some((word) => word !== 0)) pages++;
  }
  return pages;
}

Deno.test("a job's region keeps its written pages to one ring of its channel, however much data passes", async () => {
  // The region's pages count in the job's RSS once written: a ring that wraps reuses its pages,
  // so a backup of three rings' worth of data writes one ring's pages and leaves the rest alone.
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-residency-" }));
  try {
    const config = jobRegionConfig(64, 64, 10_000);
    const fileBytes = 1024 * 1024;
    const files = 3 * config.extentBytes / fileBytes;
    await Deno.mkdir(`${dir}/src`);
    const bytes = new Uint8Array(fileBytes);
    for (let i = 0; i < files; i++) {
      for (let at = 0; at < bytes.length; at += 65536) {
        crypto.getRandomValues(bytes.subarray(at, at + 65536));
      }
      await Deno.writeFile(`${dir}/src/file ${i}.bin`, bytes);
    }
    const formatted = formatRegion(config, crypto.randomUUID());
    if (!formatted.ok) throw new Error(formatted.message);
    const summary = await runBackupJob({
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      mode: "fs",
      incremental: false,
      channel: "storage",
      region: formatted.value,
    });
    assert.equal(summary.dataPath, "storage");
    const layout = attachRegion(formatted.value);
    if (!layout.ok) throw new Error(layout.message);
    const { deviceOffset, extentBytes, extentCount } = layout.value;
    const region = new Uint8Array(formatted.value);
    const written = Array.from(
      { length: extentCount },
      (_, extent) => pagesWritten(region, deviceOffset + extent * extentBytes, extentBytes),
    );
    const pageBytes = 4096;
    const writtenBytes = written.reduce((sum, pages) => sum + pages * pageBytes, 0);
    const archived = files * fileBytes;
    // The archive flows one way: its ring is one extent, written over and over. The other
    // direction's ring may carry a little (1 MiB of slack); nothing else may be written.
    const boundBytes = extentBytes + 1024 * 1024;
    assert.ok(
      writtenBytes <= boundBytes,
      `${writtenBytes} bytes of the device area written (per extent, pages: ${written}) ` +
        `for ${archived} bytes archived: more than one ring and 1 MiB (${boundBytes})`,
    );
    assert.ok(written.filter((pages) => pages > 0).length <= 2, `extents written: ${written}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
