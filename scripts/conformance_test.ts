import assert from "node:assert/strict";

const SCRIPT = new URL("./conformance.ts", import.meta.url).pathname;

async function runConformance(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-net=127.0.0.1", "--allow-env", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("conformance --json runs the chosen suite with the given runs and seed", async () => {
  const { code, stdout } = await runConformance(
    "--suite",
    "dispatch/descriptors",
    "--runs",
    "5",
    "--seed",
    "7",
    "--json",
  );
  assert.equal(code, 0);
  const results = JSON.parse(stdout) as Array<
    { suite: string; runs: number; seed: number; passed: boolean }
  >;
  assert.equal(results.length, 3);
  for (const result of results) {
    assert.equal(result.suite, "dispatch/descriptors");
    assert.deepEqual([result.runs, result.seed, result.passed], [5, 7, true]);
  }
});

Deno.test("conformance prints one line per property and a summary", async () => {
  const { code, stdout } = await runConformance("--suite", "dispatch", "--runs", "3");
  assert.equal(code, 0);
  assert.match(stdout, /^PASS +3 runs .*dispatch\/sockets: /m);
  assert.match(stdout, /^4 passed, 0 failed$/m);
});

Deno.test("conformance refuses an unknown suite and a bad --runs with exit code 2", async () => {
  const unknown = await runConformance("--suite", "nope");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no suite named "nope"/);
  const badRuns = await runConformance("--runs", "zero");
  assert.equal(badRuns.code, 2);
  assert.match(badRuns.stderr, /--runs must be an integer/);
});

Deno.test("conformance --suite reliability runs the crash drills in real processes", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-run",
      "--allow-sys",
      SCRIPT,
      "--suite",
      "reliability",
      "--runs",
      "2",
      "--seed",
      "3",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, stdout + new TextDecoder().decode(output.stderr));
  assert.match(stdout, /^PASS +2 runs .*reliability: a backup killed with SIGKILL/m);
  assert.match(stdout, /^PASS +2 runs .*reliability \(restore crashes\): a restore that dies/m);
  assert.match(stdout, /^PASS +2 runs .*reliability: a prune killed with SIGKILL/m);
  assert.match(stdout, /^PASS +2 runs .*reliability: a consolidate killed with SIGKILL/m);
  assert.match(stdout, /^4 passed, 0 failed$/m);
});
