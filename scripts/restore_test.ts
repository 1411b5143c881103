import assert from "node:assert/strict";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { describeTree, taskFlags, withTempDir, writeFileWith } from "../src/app/_testing.ts";
import { AT_FDCWD, close, O, openAt, readDirNames, readLinkAt } from "../src/adapters/fs_native.ts";

const SCRIPT = new URL("./restore.ts", import.meta.url).pathname;

/** The restore CLI with `args`, as `deno task restore` runs it; its output `piped` or not. */
async function restoreCommand(args: string[], io: "piped" | "null"): Promise<Deno.Command> {
  const flags = await taskFlags("restore");
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, SCRIPT, ...args],
    stdout: io,
    stderr: io,
  });
}

async function cli(...args: string[]) {
  const output = await (await restoreCommand(args, "piped")).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: text(output.stdout), err: text(output.stderr) };
}

/** The arguments that restore `snapshot` (the latest by default) of `repo` into `target`. */
function restoreArgs(repo: string, target: string, snapshot = "latest"): string[] {
  return ["--repo", repo, "--snapshot", snapshot, "--target", target];
}

/** Makes `${dir}/${source}` with `files` (name: content) and backs it up into `${dir}/repo`. */
async function backedUp(
  dir: string,
  source: string,
  files: Record<string, string | Uint8Array>,
): Promise<void> {
  await Deno.mkdir(`${dir}/${source}`);
  for (const [name, content] of Object.entries(files)) {
    await writeFileWith(`${dir}/${source}/${name}`, content);
  }
  await runLocalBackup({ source: `${dir}/${source}`, repo: `${dir}/repo` });
}

Deno.test("restore CLI restores the latest snapshot and prints a JSON summary", async () => {
  await withTempDir(async (dir) => {
    await backedUp(dir, "src", { "a b": "x" });
    const run = await cli(...restoreArgs(`${dir}/repo`, `${dir}/out`), "--json");
    assert.equal(run.code, 0, run.err);
    assert.equal(JSON.parse(run.out).files, 1);
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("restore CLI gives one clear line, no stack trace and a non-zero exit on bad input", async () => {
  await withTempDir(async (dir) => {
    await backedUp(dir, "src", {});
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
      [restoreArgs(`${dir}/none`, `${dir}/t`), 1, /none does not exist/],
      [restoreArgs(`${dir}/foreign`, `${dir}/t`), 1, /format borg/],
      [restoreArgs(`${dir}/corrupt`, `${dir}/t`), 1, /not valid JSON/],
      [
        restoreArgs(`${dir}/repo`, `${dir}/t`, "20000101T000000000Z-00000000"),
        1,
        /no snapshot 20000101T000000000Z-00000000/,
      ],
      [restoreArgs(`${dir}/repo`, `${dir}/src/..`), 1, /not empty/],
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
    const bigFiles = Array.from(
      { length: 6 },
      (_, i) => [`big${i}`, new Uint8Array(24 << 20).fill(i + 1)],
    );
    await backedUp(dir, "src", Object.fromEntries(bigFiles));
    const child = (await restoreCommand(restoreArgs(`${dir}/repo`, `${dir}/out`), "null")).spawn();
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
    const rerun = await cli(...restoreArgs(`${dir}/repo`, `${dir}/out`), "--overwrite");
    assert.equal(rerun.code, 0, rerun.err);
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("restore CLI --source restores the latest snapshot of that source and warns about a target inside it", async () => {
  await withTempDir(async (dir) => {
    await backedUp(dir, "one", { a: "from one" });
    await backedUp(dir, "two", { b: "from two" });
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
