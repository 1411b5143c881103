import assert from "node:assert/strict";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { describeTree, taskFlags, withTempDir, writeFileWith } from "../src/app/_testing.ts";
import { AT_FDCWD, close, O, openAt, readDirNames, readLinkAt } from "../src/adapters/fs_native.ts";

const SCRIPT = new URL("./restore.ts", import.meta.url).pathname;

async function cli(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...await taskFlags("restore"), SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: text(output.stdout), err: text(output.stderr) };
}

Deno.test("restore CLI restores the latest snapshot and prints a JSON summary", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/src/a b`, "x");
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const run = await cli(
      "--repo",
      `${dir}/repo`,
      "--snapshot",
      "latest",
      "--target",
      `${dir}/out`,
      "--json",
    );
    assert.equal(run.code, 0, run.err);
    assert.equal(JSON.parse(run.out).files, 1);
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("restore CLI gives one clear line, no stack trace and a non-zero exit on bad input", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/foreign`);
    await Deno.writeTextFile(
      `${dir}/foreign/lanfree-repository.json`,
      '{"format":"borg","version":1}',
    );
    await Deno.mkdir(`${dir}/corrupt`);
    await Deno.writeTextFile(`${dir}/corrupt/lanfree-repository.json`, "{");
    const cases: Array<[string[], number, RegExp]> = [
      [["--bogus"], 2, /bogus/],
      [["--repo", `${dir}/repo`], 2, /missing --snapshot, --target/],
      [
        ["--repo", `${dir}/none`, "--snapshot", "latest", "--target", `${dir}/t`],
        1,
        /none does not exist/,
      ],
      [
        ["--repo", `${dir}/foreign`, "--snapshot", "latest", "--target", `${dir}/t`],
        1,
        /format borg/,
      ],
      [
        ["--repo", `${dir}/corrupt`, "--snapshot", "latest", "--target", `${dir}/t`],
        1,
        /not valid JSON/,
      ],
      [
        [
          "--repo",
          `${dir}/repo`,
          "--snapshot",
          "20000101T000000000Z-00000000",
          "--target",
          `${dir}/t`,
        ],
        1,
        /no snapshot 20000101T000000000Z-00000000/,
      ],
      [
        ["--repo", `${dir}/repo`, "--snapshot", "latest", "--target", `${dir}/src/..`],
        1,
        /not empty/,
      ],
    ];
    const before = await describeTree(`${dir}/repo`);
    for (const [args, code, message] of cases) {
      const run = await cli(...args);
      assert.equal(run.code, code, `${args.join(" ")}: ${run.err}`);
      assert.match(run.err, message);
      assert.doesNotMatch(run.err, /\n\s+at /, "no stack trace");
    }
    assert.deepEqual(await describeTree(`${dir}/repo`), before);
    await assert.rejects(Deno.lstat(`${dir}/t`), Deno.errors.NotFound);
  });
});

/**
 * Whether process `pid` holds a file below `dir` open (unnamed ones read `… (deleted)`). Read
 * through the native layer: Deno's own file APIs refuse `/proc/<pid>` without `--allow-all`.
 */
function holdsFileBelow(pid: number, dir: string): boolean {
  let fds: number;
  try {
    fds = openAt(AT_FDCWD, `/proc/${pid}/fd`, O.RDONLY | O.DIRECTORY);
  } catch {
    return false; // gone
  }
  try {
    const prefix = new TextEncoder().encode(`${dir}/`);
    return readDirNames(fds).some((name) => {
      try {
        const target = readLinkAt(fds, name);
        return prefix.every((byte, at) => target[at] === byte);
      } catch {
        return false; // closed meanwhile
      }
    });
  } finally {
    close(fds);
  }
}

Deno.test("a restore killed with kill -9 midway leaves no cut-off file and no temporary under any name; a rerun completes it", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    for (let i = 0; i < 6; i++) {
      await writeFileWith(`${dir}/src/big${i}`, new Uint8Array(24 << 20).fill(i + 1));
    }
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...await taskFlags("restore"),
        SCRIPT,
        "--repo",
        `${dir}/repo`,
        "--snapshot",
        "latest",
        "--target",
        `${dir}/out`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Wait (bounded) until a file is being written (the process holds a file of the target
    // open: unnamed, or under a temporary name without O_TMPFILE); stop the process, and kill
    // it outright if it still does (else let it go on and look again).
    let writing = false;
    let ended = false;
    const ending = child.status.then(() => (ended = true));
    // Bounded: at most 12,000 looks (a minute and more), and none once the restore has ended.
    for (let tries = 0; tries < 12_000 && !writing && !ended; tries++) {
      if (holdsFileBelow(child.pid, `${dir}/out`)) {
        try {
          child.kill("SIGSTOP");
        } catch {
          break; // it ended meanwhile: not caught
        }
        writing = holdsFileBelow(child.pid, `${dir}/out`);
        if (!writing) child.kill("SIGCONT");
      } else await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (!ended) child.kill("SIGKILL");
    const status = await child.status;
    await ending;
    assert.ok(writing, `the restore was caught while writing a file (it had ended: ${ended})`);
    assert.equal(status.signal, "SIGKILL", "the restore was killed, not finished");
    for await (const entry of Deno.readDir(`${dir}/out`)) {
      assert.ok(!entry.name.endsWith(".partial"), `${entry.name}: no temporary name is left`);
      const size = (await Deno.stat(`${dir}/out/${entry.name}`)).size;
      assert.equal(size, 24 << 20, `${entry.name} under its real name is whole`);
    }
    const rerun = await cli(
      "--repo",
      `${dir}/repo`,
      "--snapshot",
      "latest",
      "--target",
      `${dir}/out`,
      "--overwrite",
    );
    assert.equal(rerun.code, 0, rerun.err);
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("restore CLI --source restores the latest snapshot of that source and warns about a target inside it", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/one`);
    await writeFileWith(`${dir}/one/a`, "from one");
    await Deno.mkdir(`${dir}/two`);
    await writeFileWith(`${dir}/two/b`, "from two");
    await runLocalBackup({ source: `${dir}/one`, repo: `${dir}/repo` });
    await runLocalBackup({ source: `${dir}/two`, repo: `${dir}/repo` });
    const args = ["--repo", `${dir}/repo`, "--snapshot", "latest", "--source", `${dir}/one`];
    const run = await cli(...args, "--target", `${dir}/out`);
    assert.equal(run.code, 0, run.err);
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/one`));
    assert.equal(run.err, "", "no warning for a target outside the source");
    const inside = await cli(...args, "--target", `${dir}/one/restored`, "--json");
    assert.equal(inside.code, 0, inside.err);
    assert.match(inside.err, /^warning: target .*one\/restored is inside the snapshot's source/m);
    assert.match(JSON.parse(inside.out).warnings[0], /inside the snapshot's source/);
  });
});
