import assert from "node:assert/strict";
import { backupTaskFlags } from "../src/app/_testing.ts";

const SCRIPT = new URL("./backup.ts", import.meta.url).pathname;

async function runBackup(...args: string[]) {
  return await runBackupWith([], ...args);
}

/** Runs the backup CLI with `denoFlags` (say `--cpu-prof`) before the script, and `env`. */
async function runBackupWith(denoFlags: string[], ...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...await backupTaskFlags(), ...denoFlags, SCRIPT, ...args],
    env: denoFlags.length === 0 ? {} : { LANFREE_END_WAIT_MS: "1000" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

function assertOneCleanLine(stderr: string, pattern: RegExp) {
  assert.match(stderr, pattern);
  assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
  assert.equal(stderr.trim().split("\n").length, 1, `one line: ${stderr}`);
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("backup with no source backs up the sample tree through storage and prints what happened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    const human = await runBackup("--repo", `${dir}/repo`);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^lanfree backup: snapshot \S+ \(full\)$/m);
    assert.match(human.stdout, /data path +storage/, human.stdout);
    assert.match(human.stdout, /bytes +storage [\d,]+, network [\d,]+/);
    const json = await runBackup("--repo", `${dir}/repo`, "--incremental", "--json");
    assert.equal(json.code, 0, json.stderr);
    const summary = JSON.parse(json.stdout);
    assert.equal(summary.files, 0, "nothing changed since the first snapshot");
    assert.equal(summary.filesTotal, 6);
    assert.equal(summary.dataPath, "storage", `fallback: ${summary.fallbackReason}`);
    assert.ok(summary.parent !== null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup reports the network fallback and its reason, and refuses it under --channel storage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    const fallback = await runBackup("--repo", `${dir}/repo`, "--region-mib", "0");
    assert.equal(fallback.code, 0, fallback.stderr);
    assert.match(fallback.stdout, /fallback +no storage region is attached/);
    const strict = await runBackup(
      "--repo",
      `${dir}/repo2`,
      "--region-mib",
      "0",
      "--channel",
      "storage",
    );
    assert.equal(strict.code, 1);
    assertOneCleanLine(strict.stderr, /--channel storage: no storage region is attached/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad input gives one clear line naming the thing, a non-zero exit and no change to the repository", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    const missing = await runBackup("--source", `${dir}/nope`, "--repo", `${dir}/repo`);
    assert.equal(missing.code, 1);
    assertOneCleanLine(missing.stderr, /nope does not exist/);
    const unknown = await runBackup("--frobnicate");
    assert.equal(unknown.code, 2);
    assertOneCleanLine(unknown.stderr, /--frobnicate/);
    const badMode = await runBackup("--mode", "tape");
    assert.equal(badMode.code, 2);
    assertOneCleanLine(badMode.stderr, /--mode must be fs or db/);
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(`${dir}/other/notes.txt`, "someone else's directory");
    const other = await runBackup("--repo", `${dir}/other`);
    assert.equal(other.code, 1);
    assertOneCleanLine(other.stderr, /other/);
    assert.deepEqual(
      await listing(`${dir}/other`),
      ["notes.txt"],
      "the foreign directory is untouched",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("progress never shows more done than the total, in one unit, below 100% until the end", async () => {
  const { progressText } = await import("./backup.ts");
  // Many small files: 36 MB of archive (headers, padding) sent for 1 MB of planned file bytes.
  const small = progressText({ files: 70_000, bytes: 36_000_000, totalBytes: 1_000_000 });
  assert.ok(small.done <= small.total, `${small.done} of ${small.total} ${small.unit}`);
  const half = progressText({ files: 3, bytes: 500_000, totalBytes: 1_000_000 });
  assert.deepEqual([half.done, half.total, half.percent], [500, 1000, 50]);
  assert.equal(half.unit, "KB");
  const start = progressText({ files: 1, bytes: 0, totalBytes: 3_000_000_000 });
  assert.deepEqual([start.done, start.total, start.unit, start.percent], [0, 3000, "MB", 0]);
  const almost = progressText({ files: 1, bytes: 999_999, totalBytes: 1_000_000 });
  assert.ok(almost.percent < 100, "100% only when everything is sent");
  assert.equal(progressText({ files: 0, bytes: 0, totalBytes: 0 }).total > 0, true);
});

Deno.test("a backup that made a snapshot but could not read some files exits 3 and its JSON lists them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/ok.txt`, "fine");
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/src/pipe`] }).output();
    assert.ok(made.success);
    const run = await runBackup("--source", `${dir}/src`, "--repo", `${dir}/repo`, "--json");
    assert.equal(run.code, 3, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.deepEqual(summary.skipped.map((s: { path: string }) => s.path), ["pipe"]);
    assert.equal(summary.files, 1);
    const help = await runBackup("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^ +3 +.*could not be read/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup --keep-last 2 forgets and prunes this source's older snapshots after the commit, and says so", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.mkdir(`${dir}/other`);
    const repo = `${dir}/repo`;
    const other = await runBackup("--source", `${dir}/other`, "--repo", repo, "--json");
    assert.equal(other.code, 0, other.stderr);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await Deno.writeTextFile(`${dir}/src/f${i}`, `file ${i}`);
      await Deno.writeTextFile(`${dir}/src/changing`, `version ${i}`.repeat(100 * (i + 1)));
      const args = ["--source", `${dir}/src`, "--repo", repo, "--incremental", "--keep-last", "2"];
      const run = await runBackup(...args, ...(i < 2 ? ["--json"] : []));
      assert.equal(run.code, 0, run.stderr);
      if (i < 2) ids.push(JSON.parse(run.stdout).snapshot);
      else {assert.match(
          run.stdout,
          new RegExp(`retention +kept 2 snapshots of this source, forgot 1: ${ids[0]}`),
        );}
    }
    const names = await listing(`${repo}/snapshots`);
    const manifests = names.filter((n) => n.endsWith(".manifest.json"));
    assert.equal(manifests.length, 3, "two of src, and the other source's one untouched");
    assert.ok(manifests.includes(`${JSON.parse(other.stdout).snapshot}.manifest.json`));
    // Its archive went too: the member the kept snapshots still read was repacked.
    assert.ok(
      !names.some((n) => n.startsWith(ids[0]!)),
      "the forgotten snapshot's archive is pruned",
    );
    // Both kept snapshots of src read the repacked member: prune rewrote their manifests, and
    // their checked records went with the manifests they vouched for; the other source's stays.
    const records = names.filter((n) => n.endsWith(".checked.json"));
    assert.deepEqual(records, [`${JSON.parse(other.stdout).snapshot}.checked.json`], `${names}`);
    assert.equal(
      names.length - records.length,
      7,
      `three snapshots, their archives and a repacked one: ${names}`,
    );
    const bad = await runBackup("--source", `${dir}/src`, "--repo", repo, "--keep-daily", "x");
    assert.equal(bad.code, 2);
    assertOneCleanLine(bad.stderr, /--keep-daily must be a count/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("under deno run --cpu-prof with LANFREE_END_WAIT_MS a backup writes its Worker hosts' profiles too, and keeps its exit codes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-cli-" });
  try {
    const profiles = async (run: string) =>
      (await listing(`${dir}/${run}`)).filter((name) => name.endsWith(".cpuprofile")).length;
    const profiled = (run: string) => ["--cpu-prof", `--cpu-prof-dir=${dir}/${run}`];
    const made = await runBackupWith(profiled("made"), "--repo", `${dir}/repo`, "--json");
    assert.equal(made.code, 0, made.stderr);
    // Deno.exit dropped the hosts' profiles: the main isolate's alone was written.
    assert.equal(await profiles("made"), 3, "the main isolate, the client host, the server host");
    // A snapshot with a file it could not read: exit 3, profiles written as well.
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/ok.txt`, "fine");
    assert.ok((await new Deno.Command("mkfifo", { args: [`${dir}/src/pipe`] }).output()).success);
    const args = ["--source", `${dir}/src`, "--repo", `${dir}/repo`, "--json"];
    const incomplete = await runBackupWith(profiled("incomplete"), ...args);
    assert.equal(incomplete.code, 3, incomplete.stderr);
    assert.equal(await profiles("incomplete"), 3);
    // A job that fails before it takes the hosts started ahead (a foreign repository): exit 1.
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(`${dir}/other/notes.txt`, "someone else's directory");
    const failed = await runBackupWith(profiled("failed"), "--repo", `${dir}/other`);
    assert.equal(failed.code, 1, failed.stderr);
    assert.ok(await profiles("failed") >= 1, "the main isolate's profile at least");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
