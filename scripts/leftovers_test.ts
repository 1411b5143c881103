import assert from "node:assert/strict";
import { createRegionFile } from "../src/adapters/region_file.ts";
import { AT_FDCWD, statAt } from "../src/adapters/fs_native.ts";
import { jobRegionConfig } from "../src/app/jobs/backup_job.ts";
import { STALE_AGE_MS, sweepStaleScratch } from "./_leftovers.ts";
import { sweepStaleNamespaces } from "./_two_hosts.ts";

const TESTING = new URL("./_region_testing.ts", import.meta.url).href;
const LIBC_FILES = new URL("../src/adapters/_libc_files.ts", import.meta.url).href;

/**
 * A directory of its own for the sweep, so it sees only what the test made (in the temporary
 * directory: the test's own `Deno.*` calls cannot reach /dev/shm without `--allow-all`).
 */
async function withSweepRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "lanfree-sweep-" });
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

/** Whether `path` exists, through libc (Deno's own calls are refused under /dev/shm). */
function exists(path: string): boolean {
  try {
    statAt(AT_FDCWD, path);
    return true;
  } catch (error) {
    if (error instanceof Error && /ENOENT/.test(error.message)) return false;
    throw error;
  }
}

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
      assert.equal(exists(stale), false);
      assert.equal(exists(`${mapped}/region`), true, "a mapped region was removed");
      assert.equal(exists(young), true, "a run that is just starting was hit");
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
    assert.equal(exists(`${root}/lanfree`), true);
  });
});

const CHILD = `
import { withShmDirectory } from ${JSON.stringify(TESTING)};
import { writeNewFile } from ${JSON.stringify(LIBC_FILES)};
await withShmDirectory(async (directory) => {
  writeNewFile(directory + "/region", new TextEncoder().encode("in use"));
  console.log(directory);
  await new Promise(() => setInterval(() => {}, 1000)); // until a signal comes
  return ["region"];
});
`;

/** The permissions `deno task test` runs with (no `--allow-all`), read from deno.json. */
const TEST_FLAGS = (() => {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const test = config.tasks.test!;
  return test.slice(test.lastIndexOf("deno test")).split(/\s+/).filter((w) =>
    w.startsWith("--allow-")
  );
})();

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`a run killed with ${signal} inside withShmDirectory leaves no directory in /dev/shm`, async () => {
    const script = await Deno.makeTempFile({ prefix: "lanfree-leftovers-", suffix: ".ts" });
    await Deno.writeTextFile(script, CHILD);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...TEST_FLAGS, script],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let printed = "";
      while (!printed.includes("\n")) { // bounded: the child prints its line or ends
        const { value, done } = await reader.read();
        if (done) break;
        printed += value;
      }
      const directory = printed.trim();
      assert.ok(TEST_FLAGS.includes("--allow-ffi") && !TEST_FLAGS.includes("--allow-all"));
      assert.match(directory, /^\/dev\/shm\/lanfree-test-/);
      assert.equal(exists(`${directory}/region`), true, "the child made its file");
      child.kill(signal);
      const status = await child.status;
      await reader.cancel();
      const stderr = await new Response(child.stderr).text();
      assert.equal(status.signal, signal, `the run still ends by its signal: ${stderr}`);
      assert.equal(exists(directory), false, `${directory} was left behind`);
    } finally {
      await Deno.remove(script);
    }
  });
}

async function ip(...args: string[]): Promise<{ ok: boolean; stdout: string }> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "null" }).output()
    .catch(() => ({ success: false, stdout: new Uint8Array() }));
  return { ok: out.success, stdout: new TextDecoder().decode(out.stdout) };
}

const canMakeNamespaces = Deno.uid() === 0 && (await ip("netns", "list")).ok;

Deno.test({
  name: "a stale namespace with no process inside is deleted; a young one and one in use are kept",
  ignore: !canMakeNamespaces, // needs root and ip (as the two-host test's namespaces do)
  async fn() {
    const tag = [...crypto.getRandomValues(new Uint8Array(3))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const [empty, busy] = [`lf${tag}a`, `lf${tag}s`];
    const ours = (name: string) => name === empty || name === busy;
    let sleeper: Deno.ChildProcess | undefined;
    try {
      for (const name of [empty, busy]) assert.ok((await ip("netns", "add", name)).ok);
      sleeper = new Deno.Command("ip", { args: ["netns", "exec", busy, "sleep", "60"] }).spawn();
      for (let tries = 0; (await ip("netns", "pids", busy)).stdout.trim() === ""; tries++) {
        assert.ok(tries < 100, "the process never entered its namespace");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.deepEqual(await sweepStaleNamespaces(Date.now(), ours), [], "young ones are kept");
      const later = Date.now() + 2 * STALE_AGE_MS;
      assert.deepEqual(await sweepStaleNamespaces(later, ours), [empty]);
      const left = (await ip("netns", "list")).stdout;
      assert.ok(!left.includes(empty) && left.includes(busy), left);
    } finally {
      sleeper?.kill("SIGKILL");
      await sleeper?.status;
      for (const name of [empty, busy]) await ip("netns", "del", name);
    }
  },
});
