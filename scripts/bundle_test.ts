import assert from "node:assert/strict";
import { buildBundle, BUNDLE_PATH } from "./bundle.ts";

const NODE_CHECK = `
const lanfree = await import(process.argv[2]);
const results = await lanfree.runSuites([lanfree.descriptorSuite()], { runs: 20, seed: 3 });
const jobs = new lanfree.JobQueue(async () => "done", () => Date.now());
const app = lanfree.createControlApp({
  token: "t", roots: ["/nowhere"], resolvePath: async (p) => p, jobs,
  listSnapshots: async () => [], storageOccupancy: () => undefined, suites: () => [],
});
const health = await app.fetch(new Request("http://edge/health"));
const denied = await app.fetch(new Request("http://edge/v1/jobs"));
console.log(JSON.stringify({
  passed: results.every((r) => r.passed), properties: results.length,
  health: await health.json(), deniedStatus: denied.status,
  kind: lanfree.kindOfDescriptor(2 ** 30),
}));
`;

Deno.test("the edge bundle builds and runs under plain Node: a suite passes and app.fetch answers", async () => {
  const bytes = await buildBundle();
  assert.ok(bytes > 0);
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bundle-" });
  try {
    const script = `${dir}/check.mjs`;
    await Deno.writeTextFile(script, NODE_CHECK);
    const output = await new Deno.Command("node", {
      args: [script, `file://${BUNDLE_PATH}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    const report = JSON.parse(new TextDecoder().decode(output.stdout));
    assert.deepEqual(report, {
      passed: true,
      properties: 3,
      health: { status: "ok" },
      deniedStatus: 401,
      kind: "storage",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
