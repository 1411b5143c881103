import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { withTempDir, writeFileWith } from "../_testing.ts";

/** Every byte under `dir`, files concatenated (the repository as an attacker would grep it). */
async function allBytes(dir: string): Promise<string> {
  const parts: string[] = [];
  for await (const item of Deno.readDir(dir)) {
    const path = `${dir}/${item.name}`;
    if (item.isDirectory) parts.push(await allBytes(path));
    else if (item.isFile) parts.push(new TextDecoder("latin1").decode(await Deno.readFile(path)));
  }
  return parts.join("");
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of Deno.readDir(dir)) names.push(item.name);
  return names.sort();
}

Deno.test("a file swapped for a symlink between scan and pack is skipped, the link target is nowhere in the repository", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/secret`, "TOP-SECRET-SHADOW-LINE", 0o600);
    await writeFileWith(`${dir}/src/notes.txt`, "harmless notes, long enough", 0o644);
    await writeFileWith(`${dir}/src/keep.txt`, "kept", 0o644);
    const summary = await runLocalBackup({
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      beforePack: async () => {
        await Deno.remove(`${dir}/src/notes.txt`);
        await Deno.symlink(`${dir}/secret`, `${dir}/src/notes.txt`);
      },
    });
    assert.ok(!(await allBytes(`${dir}/repo`)).includes("TOP-SECRET-SHADOW-LINE"));
    assert.deepEqual(summary.skippedEntries, [{
      path: "notes.txt",
      reason: "changed type during the backup (now a symlink)",
    }]);
    assert.equal(summary.files, 1);
  });
});

Deno.test("a file swapped for a FIFO between scan and pack is skipped at once; lock and temporary files are gone", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/src/pipe`, "was a file", 0o644);
    await writeFileWith(`${dir}/src/z.txt`, "after the pipe", 0o644);
    // Watchdog for a reader that blocks on the FIFO: a separate process opens its write end
    // after 20 s, which releases the reader, so the test fails instead of hanging. It is a
    // process, not a timer, because a blocking open may hold this isolate's thread. A correct
    // backup never comes near it: it is killed once the backup returns.
    const watchdog = new Deno.Command("sh", {
      args: [
        "-c",
        "trap 'kill $! 2>/dev/null; exit 0' TERM; sleep 20 & wait $!; : > \"$1\"; echo released",
        "watchdog",
        `${dir}/src/pipe`,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let summary;
    try {
      summary = await runLocalBackup({
        source: `${dir}/src`,
        repo: `${dir}/repo`,
        beforePack: async () => {
          await Deno.remove(`${dir}/src/pipe`);
          const made = await new Deno.Command("mkfifo", { args: [`${dir}/src/pipe`] }).output();
          assert.ok(made.success, "mkfifo");
        },
      });
    } finally {
      try {
        watchdog.kill("SIGTERM");
      } catch { /* it has exited */ }
    }
    const { stdout } = await watchdog.output();
    assert.equal(
      new TextDecoder().decode(stdout),
      "",
      "the backup blocked on the FIFO until the watchdog opened its write end",
    );
    assert.deepEqual(summary.skippedEntries, [{
      path: "pipe",
      reason: "changed type during the backup (now a fifo)",
    }]);
    assert.equal(summary.files, 1);
    assert.deepEqual(await listing(`${dir}/repo`), [
      "lanfree-repository.json",
      "snapshots",
      "tmp",
    ]);
    assert.deepEqual(await listing(`${dir}/repo/tmp`), []);
  });
});

Deno.test("a file replaced by another file between scan and pack is skipped, never stored under its name", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/src/a`, "original", 0o644);
    await writeFileWith(`${dir}/other`, "OTHER-FILES-BYTES", 0o600);
    const summary = await runLocalBackup({
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      beforePack: async () => {
        await Deno.rename(`${dir}/other`, `${dir}/src/a`);
      },
    });
    assert.ok(!(await allBytes(`${dir}/repo`)).includes("OTHER-FILES-BYTES"));
    assert.deepEqual(summary.skippedEntries, [{
      path: "a",
      reason: "was replaced by another file during the backup",
    }]);
  });
});
