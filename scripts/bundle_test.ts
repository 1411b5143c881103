import assert from "node:assert/strict";
import { buildBundle } from "./bundle.ts";
import * as edge from "../src/edge.ts";
import * as lanfree from "../mod.ts";

/** Runs under Node: lanfree's platform-neutral suites and the control app, from the bundle. */
const NODE_CHECK = `
const lanfree = await import(process.argv[2]);
const results = await lanfree.runSuites(lanfree.edgeSuites(), { runs: 3, seed: 3 });
const jobs = lanfree.jobsPort(new lanfree.JobQueue(async () => "done", () => Date.now()));
const app = lanfree.createControlApp({
  token: "t", roots: ["/nowhere"], resolvePath: async (p) => p, jobs,
  listSnapshots: async () => [], storageOccupancy: () => undefined,
  suites: lanfree.suitesPort(() => []),
});
const health = await app.fetch(new Request("http://edge/health"));
const denied = await app.fetch(new Request("http://edge/v1/jobs"));
console.log(JSON.stringify({
  failed: results.filter((r) => !r.passed).map((r) => r.suite + ": " + r.property),
  properties: results.length,
  health: await health.json(), deniedStatus: denied.status,
  kind: lanfree.kindOfDescriptor(2 ** 30),
  exports: Object.keys(lanfree).sort(),
}));
`;

/** A consumer that type-checks against the declarations only if they are right. */
const CONSUMER = `
import {
  createControlApp, type ControlServices, edgeSuites, JobQueue, jobsPort, kindOfDescriptor,
  type Message, type PropertyResult, type RegionFactory, runSuites, sharedArrayBufferRegions,
  type SocketKind, stpSuite, suitesPort,
} from "./lanfree.mjs";

const kind: SocketKind | undefined = kindOfDescriptor(3);
const regions: RegionFactory = sharedArrayBufferRegions;
const message: Message = { type: "port", kind: "storage", port: 9 };
const services: ControlServices = {
  token: "t", roots: [], resolvePath: async (p: string) => p,
  jobs: jobsPort(new JobQueue(async () => null, () => 0)), listSnapshots: async () => [],
  storageOccupancy: () => undefined, suites: suitesPort(edgeSuites),
};
const results: PropertyResult[] = await runSuites([stpSuite(regions)], { runs: 1 });
const response: Response | Promise<Response> = createControlApp(services).fetch(new Request("http://x/"));
console.log(kind, message, results.length, response);
`;

const TSCONFIG = JSON.stringify({
  compilerOptions: {
    target: "es2022",
    module: "nodenext",
    moduleResolution: "nodenext",
    lib: ["es2024", "dom"],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: false,
  },
  files: ["consumer.mts"],
});

const decoder = new TextDecoder();

async function node(args: string[], cwd?: string): Promise<Deno.CommandOutput> {
  return await new Deno.Command("node", { args, cwd, stdout: "piped", stderr: "piped" }).output();
}

/** `tsc -p` under Node in `dir`, with the typescript package lanfree pins. */
async function typeCheck(dir: string, consumer: string): Promise<{ ok: boolean; output: string }> {
  await Deno.writeTextFile(`${dir}/consumer.mts`, consumer);
  await Deno.writeTextFile(`${dir}/tsconfig.json`, TSCONFIG);
  const typescript = new URL("../bin/tsc", import.meta.resolve("typescript")).pathname;
  const output = await node([typescript, "-p", `${dir}/tsconfig.json`], dir);
  return {
    ok: output.success,
    output: decoder.decode(output.stdout) + decoder.decode(output.stderr),
  };
}

/** Names a module exports at run time (values only: types leave nothing behind). */
const valueNames = (module: object): string[] => Object.keys(module).sort();

Deno.test("mod.ts exports everything the bundle (src/edge.ts) does", () => {
  const missing = valueNames(edge).filter((name) => !(name in lanfree));
  assert.deepEqual(missing, []);
});

Deno.test("deno task bundle's output, built once into a temporary directory", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-bundle-" });
  try {
    const built = await buildBundle(dir);
    assert.ok(built.moduleBytes > 0 && built.typesBytes > 0);

    await t.step(
      "runs under plain Node: every platform-neutral suite passes, app.fetch answers",
      async () => {
        await Deno.writeTextFile(`${dir}/check.mjs`, NODE_CHECK);
        const output = await node([`${dir}/check.mjs`, `file://${built.modulePath}`]);
        assert.equal(output.code, 0, decoder.decode(output.stderr));
        const report = JSON.parse(decoder.decode(output.stdout));
        const properties = edge.edgeSuites().flatMap((suite) => suite.properties).length;
        assert.deepEqual(report.failed, []);
        assert.equal(report.properties, properties);
        assert.deepEqual(report.health, { status: "ok" });
        assert.equal(report.deniedStatus, 401);
        assert.equal(report.kind, "storage");
        assert.deepEqual(
          report.exports,
          valueNames(edge),
          "the bundle exports exactly src/edge.ts",
        );
      },
    );

    await t.step(
      "ships a self-contained .d.ts a Node consumer type-checks against, and fails on a type error",
      async () => {
        assert.equal(built.typesPath, `${dir}/lanfree.d.mts`);
        const declarations = await Deno.readTextFile(built.typesPath);
        assert.doesNotMatch(
          declarations,
          /^import .* from ['"]/m,
          "imports nothing: npm types inlined",
        );
        // Every value the bundle exports is declared: the consumer names each one.
        const named = valueNames(edge).map((name) => `lanfree.${name};`).join("\n");
        const everyName = `import * as lanfree from "./lanfree.mjs";\n${named}\n`;
        const good = await typeCheck(dir, `${CONSUMER}\n${everyName}`);
        assert.ok(good.ok, good.output);
        const bad = await typeCheck(
          dir,
          `${CONSUMER}\nconst wrong: number = kindOfDescriptor(3);\n`,
        );
        assert.ok(!bad.ok, "a type error must fail the check");
        assert.match(bad.output, /consumer\.mts.*TS2322/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
