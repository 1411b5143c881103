import assert from "node:assert/strict";
import { docLint, entryPoints } from "./doc_lint.ts";

/** A throwaway project whose one entry point is `source`. */
async function projectWith(source: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-doc-lint-" });
  await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ exports: { ".": "./mod.ts" } }));
  await Deno.writeTextFile(`${dir}/mod.ts`, source);
  return dir;
}

Deno.test("entryPoints() reads a map or a single string and refuses anything else", () => {
  assert.deepEqual(entryPoints({ exports: "./mod.ts" }), [[".", "./mod.ts"]]);
  assert.deepEqual(entryPoints({ exports: { ".": "./a.ts", "./b": "./b.ts" } }), [
    [".", "./a.ts"],
    ["./b", "./b.ts"],
  ]);
  assert.throws(() => entryPoints({}), TypeError);
  assert.throws(() => entryPoints({ exports: { ".": 1 } }), /entry \. must be a module path/);
});

Deno.test("docLint() fails an entry point that exports an undocumented or private-typed symbol", async () => {
  const dir = await projectWith(
    "/** m\n * @module */\ninterface Hidden { a: number }\n" +
      "export function leak(): Hidden { return { a: 1 }; }\nexport const bare = 1;\n",
  );
  try {
    const [result] = await docLint(dir);
    assert.equal(result?.ok, false);
    assert.match(result!.output, /missing-jsdoc/);
    assert.match(result!.output, /private-type-ref/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("docLint() passes an entry point whose exports are documented with public types", async () => {
  const dir = await projectWith(
    "/** m\n * @module */\n/** A pair. */\nexport interface Pair {\n  /** first */\n  a: number;\n}\n" +
      "/**\n * Makes one.\n * @returns the pair\n */\nexport function pair(): Pair {\n  return { a: 1 };\n}\n",
  );
  try {
    assert.deepEqual(await docLint(dir), [
      { exportPath: ".", module: "./mod.ts", ok: true, output: "" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
