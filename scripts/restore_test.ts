import assert from "node:assert/strict";
import { runLocalBackup } from "../src/app/local_backup.ts";
import { describeTree, withTempDir, writeFileWith } from "../src/app/_testing.ts";

const SCRIPT = new URL("./restore.ts", import.meta.url).pathname;

async function cli(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", SCRIPT, ...args],
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
