import assert from "node:assert/strict";
import { buildBundle } from "./bundle.ts";
import { locateWorkerd, startEdgeWorker } from "./_workerd.ts";
import { edgeSuites } from "../property-tests/edge_suites.ts";

const TOKEN = `edge-${crypto.randomUUID()}`;
const ON_CI = Deno.env.get("CI") === "true";
const workerd = await locateWorkerd();
if (!workerd.ok && !ON_CI) {
  console.warn(
    `\n!!! workerd could not be installed here, so the edge test is SKIPPED: ${workerd.reason}\n` +
      "!!! (on CI, with CI=true, this test runs and fails instead)\n",
  );
}

interface SuitesAnswer {
  readonly passed: boolean;
  readonly results: ReadonlyArray<{ suite: string; property: string; passed: boolean }>;
}

const expected = edgeSuites().flatMap((suite) =>
  suite.properties.map((property) => `${suite.name}: ${property.name}`)
);
const names = (answer: SuitesAnswer) => answer.results.map((r) => `${r.suite}: ${r.property}`);
const failures = (answer: SuitesAnswer) => answer.results.filter((r) => !r.passed);

Deno.test({
  name: "workerd runs the bundle: every platform-neutral suite passes and the control app answers",
  ignore: !workerd.ok && !ON_CI,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "lanfree-workerd-" });
    const edge = await buildBundle(dir).then((built) =>
      startEdgeWorker({ dir, bundlePath: built.modulePath, token: TOKEN })
    ).catch(async (error) => {
      await Deno.remove(dir, { recursive: true });
      throw error;
    });
    const auth = { authorization: `Bearer ${TOKEN}` };
    try {
      console.log(
        `edge-cold-start-ms ${edge.firstResponseMs.toFixed(0)} (workerd, first response)`,
      );

      await t.step(
        "GET /suites runs every suite of edgeSuites() and every property holds",
        async () => {
          const response = await fetch(`${edge.url}/suites?runs=20&seed=42`);
          assert.equal(response.status, 200, edge.stderr());
          const answer: SuitesAnswer = await response.json();
          assert.deepEqual(names(answer), expected);
          assert.deepEqual(failures(answer), []);
          assert.equal(answer.passed, true);
        },
      );

      await t.step("GET /health answers without a token", async () => {
        const response = await fetch(`${edge.url}/health`);
        assert.equal(response.status, 200);
        assert.deepEqual(await response.json(), { status: "ok" });
      });

      await t.step("POST /v1/conformance with the bearer token runs the suites", async () => {
        const response = await fetch(`${edge.url}/v1/conformance`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ runs: 5, seed: 7 }),
        });
        assert.equal(response.status, 200, edge.stderr());
        const answer: SuitesAnswer = await response.json();
        assert.deepEqual(names(answer), expected);
        assert.deepEqual(failures(answer), []);
        assert.equal(answer.passed, true);
      });

      await t.step(
        "POST /v1/conformance without the token, or with a wrong one, is 401",
        async () => {
          const tokens: Array<Record<string, string>> = [{}, { authorization: "Bearer wrong" }];
          for (const headers of tokens) {
            const response = await fetch(`${edge.url}/v1/conformance`, {
              method: "POST",
              headers: { ...headers, "content-type": "application/json" },
              body: JSON.stringify({ runs: 1 }),
            });
            assert.equal(response.status, 401);
            assert.equal(response.headers.get("content-type"), "application/problem+json");
            assert.equal((await response.json()).status, 401);
          }
        },
      );

      await t.step(
        "the services are conformance-only: no job, no repository, no region",
        async () => {
          const job = await fetch(`${edge.url}/v1/jobs`, {
            method: "POST",
            headers: { ...auth, "content-type": "application/json" },
            body: JSON.stringify({ kind: "verify", repo: "/repo" }),
          });
          assert.equal(job.status, 403);
          await job.body?.cancel();
          const storage = await fetch(`${edge.url}/v1/storage`, { headers: auth });
          assert.equal(storage.status, 404);
          await storage.body?.cancel();
        },
      );

      await t.step("a bad query is a 400, not a crash", async () => {
        const response = await fetch(`${edge.url}/suites?runs=0`);
        assert.equal(response.status, 400);
        assert.match((await response.json()).error, /runs must be an integer in 1\.\.1000/);
      });
    } finally {
      await edge.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
