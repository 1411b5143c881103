import assert from "node:assert/strict";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { withTempDir, writeFileWith } from "../src/app/_testing.ts";

const SCRIPT = new URL("./verify.ts", import.meta.url).pathname;

async function cli(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: text(output.stdout), err: text(output.stderr) };
}

Deno.test("verify CLI passes a sound repository and names a corrupted file", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    await writeFileWith(`${dir}/src/ledger.csv`, "id,amount\n1,100\n");
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const good = await cli("--repo", `${dir}/repo`, "--json");
    assert.equal(good.code, 0, good.err);
    assert.equal(JSON.parse(good.out).files, 1);
    const archive = `${dir}/repo/snapshots/${snapshot}.tar`;
    const bytes = await Deno.readFile(archive);
    bytes[new TextDecoder("latin1").decode(bytes).indexOf("1,100")] = 0x39;
    await Deno.writeFile(archive, bytes);
    const bad = await cli("--repo", `${dir}/repo`, "--snapshot", snapshot);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /"ledger\.csv".*SHA-256 does not match/);
  });
});

Deno.test("verify CLI refuses bad input with one clear line and no stack trace", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/empty-dir`);
    const cases: Array<[string[], number, RegExp]> = [
      [[], 2, /missing --repo/],
      [["--repo", dir, "--what"], 2, /what/],
      [["--repo", `${dir}/empty-dir`], 1, /not a lanfree repository/],
      [["--repo", `${dir}/nope`], 1, /nope does not exist/],
    ];
    for (const [args, code, message] of cases) {
      const run = await cli(...args);
      assert.equal(run.code, code, run.err);
      assert.match(run.err, message);
      assert.doesNotMatch(run.err, /\n\s+at /);
    }
  });
});
