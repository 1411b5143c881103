import assert from "node:assert/strict";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { listSnapshotIds, openRepository, readManifest } from "../src/app/repository/repository.ts";
import { withTempDir, writeFileWith } from "../src/app/_testing.ts";
import { main as forgetMain } from "./forget.ts";
import { main as pruneMain } from "./prune.ts";
import { main as consolidateMain } from "./consolidate.ts";

/** Runs `deno task NAME` the way deno.json defines it (its permissions), from the repository. */
async function task(name: string, ...args: string[]) {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const words = String(config.tasks[name]).split(/\s+/).slice(2); // after "deno run"
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...words, ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: text(output.stdout), err: text(output.stderr) };
}

/** Three snapshots of one source, a file changed before each incremental. */
async function threeSnapshots(dir: string): Promise<string[]> {
  await Deno.mkdir(`${dir}/src`);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    await writeFileWith(`${dir}/src/f`, `version ${i}`, 0o644, 1_600_000_000 + i);
    await writeFileWith(`${dir}/src/keep-${i}`, `file ${i}`);
    const summary = await runLocalBackup({
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      incremental: i > 0,
    });
    ids.push(summary.snapshot);
  }
  return ids;
}

Deno.test("deno task forget, prune and consolidate: keep the last two, prune, then make the newest stand alone", async () => {
  await withTempDir(async (dir) => {
    const [first, second, third] = await threeSnapshots(dir);
    const repo = `${dir}/repo`;
    const dry = await task("forget", "--repo", repo, "--keep-last", "2", "--dry-run");
    assert.equal(dry.code, 0, dry.err);
    assert.match(dry.out, new RegExp(`remove  ${first}`));
    assert.match(dry.out, new RegExp(`keep    ${third}  last`));
    assert.match(dry.out, /would remove 1 snapshots/);
    assert.equal((await listSnapshotIds(await openRepository(repo))).length, 3);
    const forget = await task("forget", "--repo", repo, "--keep-last", "2", "--time-zone", "UTC");
    assert.equal(forget.code, 0, forget.err);
    assert.match(forget.out, /removed 1 snapshots \(periods counted in UTC\)/);
    const prune = await task("prune", "--repo", repo, "--max-unused", "0%", "--json");
    assert.equal(prune.code, 0, prune.err);
    const report = JSON.parse(prune.out);
    assert.deepEqual(report.archives.map((a: { action: string }) => a.action), [
      "repack",
      "keep",
      "keep",
    ]);
    const consolidate = await task("consolidate", "--repo", repo, "--snapshot", "latest");
    assert.equal(consolidate.code, 0, consolidate.err);
    assert.match(
      consolidate.out,
      new RegExp(`now stands alone \\(it was incremental to ${second}\\)`),
    );
    assert.equal((await readManifest({ path: repo }, third!)).parent, null);
  });
});

Deno.test("the retention commands give one clear line and exit 2 on bad usage, 1 on a bad repository", async () => {
  await withTempDir(async (dir) => {
    const commands = { forget: forgetMain, prune: pruneMain, consolidate: consolidateMain };
    const cases: Array<[keyof typeof commands, string[], number, RegExp]> = [
      ["forget", ["--repo", dir, "--keep-weekly=-3"], 2, /--keep-weekly must be a count/],
      ["forget", ["--repo", dir, "--keep-within", "3w"], 2, /keep-within: duration "3w"/],
      ["forget", ["--repo", dir, "--time-zone", "Mars/Base", "--keep-last", "1"], 2, /time zone/],
      ["forget", ["--repo", `${dir}/none`, "--keep-last", "1"], 1, /none does not exist/],
      ["prune", ["--repo", dir, "--max-unused", "150"], 2, /--max-unused must be a percent/],
      ["prune", ["--repo", dir], 1, /not a lanfree repository/],
      ["consolidate", ["--repo", dir, "--snapshot", "nope", "--extra"], 2, /extra/],
    ];
    for (const [name, args, code, message] of cases) {
      const err: string[] = [];
      const exit = await commands[name](args, { out: () => {}, err: (line) => err.push(line) });
      assert.equal(exit, code, `${name} ${args.join(" ")}: ${err.join("\n")}`);
      assert.match(err[0] ?? "", message);
      assert.doesNotMatch(err.join("\n"), /\n\s+at /, "no stack trace");
    }
  });
});
