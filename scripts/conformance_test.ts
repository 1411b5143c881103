import assert from "node:assert/strict";

const SCRIPT = new URL("./conformance.ts", import.meta.url).pathname;

/** Runs the CLI (or another script with its command line) with the task's read, net and env. */
async function runScript(script: string, args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-net=127.0.0.1", "--allow-env", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

const runConformance = (...args: string[]) => runScript(SCRIPT, args);

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

const TRIPPING = new URL("./_conformance_tripping.ts", import.meta.url).pathname;

/** The CLI over the tripping suite alone, seed 5. */
const runTripping = (...args: string[]) => runScript(TRIPPING, ["--seed", "5", ...args]);

Deno.test("conformance reports each property that trips an invariant as its failure with the replay command, and goes on", async () => {
  const { code, stdout, stderr } = await runTripping();
  assert.equal(code, 1, stderr);
  for (
    const name of [
      "trips an invariant in its predicate",
      "trips an invariant while generating its input",
      "trips an invariant while being built",
      "lets an invariant escape in a promise nobody awaits",
    ]
  ) {
    assert.match(stdout, new RegExp(`^FAIL .*tripping: ${name}$`, "m"));
    assert.match(
      stdout,
      new RegExp(`replay: deno task conformance --suite tripping --property '${name}' --seed 5`),
    );
  }
  assert.match(stdout, /^PASS +5 runs .*tripping: holds$/m);
  assert.match(stdout, /Counterexample: \[50\]/);
  assert.match(stdout, /invariant violated: input 50 < 50\n +at invariant \(/);
  assert.match(stdout, /^1 passed, 4 failed$/m);
});

Deno.test("conformance --json gives a tripped property's counterexample, seed, path and replay command", async () => {
  const { code, stdout, stderr } = await runTripping("--json", "--property", "escape");
  assert.equal(code, 1, stderr);
  const [result] = JSON.parse(stdout) as Array<Record<string, unknown>>;
  assert.equal(result?.passed, false);
  assert.equal(result?.seed, 5);
  assert.equal(result?.counterexample, "[50]");
  assert.equal(typeof result?.path, "string");
  assert.match(String(result?.report), /escaped the property/);
  assert.match(String(result?.replayCommand), /--seed 5 --path \S+$/);
});

Deno.test("a replay command with a negative seed is one the conformance CLI parses (--seed=-N)", async () => {
  const { replayCommand } = await import("./conformance.ts");
  const result = {
    suite: "s",
    property: "p",
    passed: false,
    runs: 1,
    timeMs: 1,
    seed: -1911018596,
    replay: { seed: -1911018596, path: "3:2" },
  };
  const command = replayCommand(result);
  assert.match(command, / --seed=-1911018596 --path 3:2$/);
  assert.match(replayCommand({ ...result, replay: { seed: 5 } }), / --seed 5$/);
});
