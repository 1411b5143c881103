/**
 * lanfree used from another Deno project, the way the README says: a copy of lanfree at
 * `<tmp>/lanfree`, the project of `fixtures/consumer/` at `<tmp>/consumer` with the README's
 * import-map block as its `deno.json`, and `deno test` run inside the project (its own config
 * only: no `--config` pointing into lanfree).
 */

import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MARKER = "<!-- consumer-deno-json:";
/** What a lanfree checkout needs for its entry points and the Workers they start. */
const LANFREE_FILES = ["deno.json", "deno.lock", "mod.ts", "conformance.ts", "internal.ts"];
const LANFREE_DIRS = ["src", "property-tests"];
const decoder = new TextDecoder();

/** The JSON block that follows the marker comment in the README. */
async function readmeBlock(): Promise<{ imports: Record<string, string> }> {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, `README.md has no ${MARKER} block`);
  const block = /```json\n([\s\S]*?)\n```/.exec(readme.slice(at));
  assert.ok(block, "no ```json block after the marker");
  return JSON.parse(block[1]!);
}

/** Package name and version of an `npm:name@version` specifier. */
function npmPackage(specifier: string): { name: string; version: string } {
  const match = /^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)@([^/]+)/.exec(specifier);
  assert.ok(match, `not an npm specifier with a version: ${specifier}`);
  return { name: match[1]!, version: match[2]! };
}

/** Package name of a bare specifier (`hono/streaming` -> `hono`, `@a/b/c` -> `@a/b`). */
function packageOf(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

/** Bare specifiers lanfree's modules import, by package, with the version they resolve to. */
async function npmImportsOf(roots: string[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const root of roots) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, decoder.decode(output.stderr));
    const graph = JSON.parse(decoder.decode(output.stdout)) as {
      modules: Array<{ dependencies?: Array<{ specifier: string; code?: { specifier: string } }> }>;
      npmPackages: Record<string, { name: string; version: string }>;
    };
    for (const module of graph.modules) {
      for (const dependency of module.dependencies ?? []) {
        const resolved = dependency.code?.specifier ?? "";
        if (!resolved.startsWith("npm:")) continue;
        found.set(packageOf(dependency.specifier), npmPackage(resolved).version);
      }
    }
  }
  return found;
}

/** The entry points and every Worker module a backup job starts. */
async function lanfreeRoots(): Promise<string[]> {
  const roots = ["mod.ts", "conformance.ts", "internal.ts", "src/edge.ts"];
  for (const dir of ["src/app", "src/adapters"]) {
    for await (const entry of Deno.readDir(`${ROOT}/${dir}`)) {
      if (entry.name.endsWith("_worker.ts")) roots.push(`${dir}/${entry.name}`);
    }
  }
  return roots;
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

Deno.test("the README's block names exactly the npm packages lanfree's modules import, at the lock's versions", async () => {
  const block = await readmeBlock();
  const named = new Map<string, string>();
  for (const [key, target] of Object.entries(block.imports)) {
    if (!target.startsWith("npm:")) continue;
    const { name, version } = npmPackage(target);
    assert.equal(key, name, "each npm package under its own name");
    named.set(name, version);
  }
  const imported = await npmImportsOf(await lanfreeRoots());
  assert.deepEqual(
    [...named].sort(),
    [...imported].sort(),
    "README block (left) vs what lanfree's modules import, resolved through deno.lock (right)",
  );
});

Deno.test("a project beside a lanfree checkout imports mod.ts through the README's block and runs a suite on its own region", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-consumer-" });
  try {
    await Deno.mkdir(`${dir}/lanfree`);
    for (const file of LANFREE_FILES) {
      await Deno.copyFile(`${ROOT}/${file}`, `${dir}/lanfree/${file}`);
    }
    for (const sub of LANFREE_DIRS) await copyTree(`${ROOT}/${sub}`, `${dir}/lanfree/${sub}`);
    await copyTree(`${ROOT}/fixtures/consumer`, `${dir}/consumer`);
    const block = await readmeBlock();
    await Deno.writeTextFile(`${dir}/consumer/deno.json`, JSON.stringify(block, null, 2));

    const output = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-read", "--allow-env"],
      cwd: `${dir}/consumer`,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    assert.ok(output.success, text);
    assert.match(text, /ok \| 2 passed \| 0 failed/);

    // The project's own lock resolved every npm package of the block to the version it names.
    const lock = JSON.parse(await Deno.readTextFile(`${dir}/consumer/deno.lock`)) as {
      specifiers: Record<string, string>;
    };
    // A package with peer dependencies is locked as `version_peer@x_peer@y`: the version is
    // the part before the first `_`.
    const resolved = new Map(
      Object.entries(lock.specifiers).map((
        [key, version],
      ) => [npmPackage(key).name, version.split("_")[0]]),
    );
    for (const target of Object.values(block.imports).filter((t) => t.startsWith("npm:"))) {
      const { name, version } = npmPackage(target);
      if (resolved.has(name)) assert.equal(resolved.get(name), version, name);
    }
    assert.ok(resolved.has("fast-check"), "the suite's fast-check came through the block's pin");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
