import assert from "node:assert/strict";
import { createRegionFile } from "../src/adapters/region_file.ts";
import { makeTempDirectory } from "../src/adapters/_libc_files.ts";
import { jobRegionConfig } from "../src/app/jobs/backup_job.ts";
import { STALE_AGE_MS, sweepStaleScratch } from "./_leftovers.ts";

const TESTING = new URL("./_region_testing.ts", import.meta.url).href;

/** A directory under /dev/shm of its own, so the sweep under test sees only what we made. */
async function withSweepRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = makeTempDirectory("/dev/shm/lanfree-sweep-");
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function age(directory: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms);
  for (const entry of Deno.readDirSync(directory)) {
    await Deno.utime(`${directory}/${entry.name}`, then, then);
  }
  await Deno.utime(directory, then, then);
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("a stale scratch directory no process uses is swept; a mapped one and a young one are kept", async () => {
  await withSweepRoot(async (root) => {
    const stale = `${root}/lanfree-test-stale`;
    const mapped = `${root}/lanfree-test-mapped`;
    const young = `${root}/lanfree-bench-young`;
    for (const directory of [stale, mapped, young]) await Deno.mkdir(directory);
    await Deno.writeTextFile(`${stale}/region`, "left by a killed run");
    const region = createRegionFile(`${mapped}/region`, jobRegionConfig(1, 4, 1_000));
    try {
      await age(stale, 2 * STALE_AGE_MS);
      await age(mapped, 2 * STALE_AGE_MS);
      const removed = sweepStaleScratch({ root });
      assert.deepEqual(removed, [stale]);
      assert.equal(await exists(stale), false);
      assert.equal(await exists(`${mapped}/region`), true, "a mapped region was removed");
      assert.equal(await exists(young), true, "a run that is just starting was hit");
    } finally {
      region.close();
    }
    await age(mapped, 2 * STALE_AGE_MS); // unmapping touched it
    assert.deepEqual(sweepStaleScratch({ root }), [mapped], "unmapped now, so stale");
  });
});

Deno.test("a directory outside the scratch prefixes is never swept, however old", async () => {
  await withSweepRoot(async (root) => {
    await Deno.mkdir(`${root}/lanfree`); // the default region directory of real hosts
    await age(`${root}/lanfree`, 2 * STALE_AGE_MS);
    assert.deepEqual(sweepStaleScratch({ root }), []);
    assert.equal(await exists(`${root}/lanfree`), true);
  });
});

const CHILD = `
import { withShmDirectory } from ${JSON.stringify(TESTING)};
await withShmDirectory(async (directory) => {
  Deno.writeTextFileSync(directory + "/region", "in use");
  console.log(directory);
  await new Promise(() => setInterval(() => {}, 1000)); // until a signal comes
  return ["region"];
});
`;

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`a run killed with ${signal} inside withShmDirectory leaves no directory in /dev/shm`, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", CHILD],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let printed = "";
    while (!printed.includes("\n")) { // bounded: the child prints its line or ends
      const { value, done } = await reader.read();
      if (done) break;
      printed += value;
    }
    const directory = printed.trim();
    assert.match(directory, /^\/dev\/shm\/lanfree-test-/);
    child.kill(signal);
    const status = await child.status;
    await reader.cancel();
    await child.stderr.cancel();
    assert.equal(status.signal, signal, "the run still ends by its signal");
    assert.equal(await exists(directory), false, `${directory} was left behind`);
  });
}
