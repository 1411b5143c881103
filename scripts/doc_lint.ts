/**
 * `deno task doc-lint`: runs `deno doc --lint` on every entry point named in `deno.json`'s
 * `exports` map, one entry point at a time, so each one's documentation is complete on its own
 * (every exported symbol documented, explicit types, and every type it reaches exported from that
 * same entry point). A new export path is covered as soon as it is added to the map.
 *
 * @module
 */

/** What `deno doc --lint` said about one entry point. */
export interface DocLintResult {
  /** The export path (`"."`, `"./edge"`, ...). */
  readonly exportPath: string;
  /** The module it maps to, relative to the project root. */
  readonly module: string;
  /** True when `deno doc --lint` found nothing. */
  readonly ok: boolean;
  /** What it printed (diagnostics and the error count), empty when clean. */
  readonly output: string;
}

/**
 * Reads the entry points of a `deno.json`: its `exports` map, or a single `exports` string as
 * `"."`.
 *
 * @param config the parsed `deno.json`
 * @returns export path and module pairs, in the map's order
 * @throws TypeError when `exports` is missing or not a string or a map of strings
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { entryPoints } from "./doc_lint.ts";
 * assert.deepEqual(entryPoints({ exports: { ".": "./mod.ts", "./edge": "./src/edge.ts" } }), [
 *   [".", "./mod.ts"],
 *   ["./edge", "./src/edge.ts"],
 * ]);
 * ```
 */
export function entryPoints(config: unknown): Array<[string, string]> {
  const exports = (config as { exports?: unknown } | null)?.exports;
  if (typeof exports === "string") return [[".", exports]];
  if (typeof exports !== "object" || exports === null || Array.isArray(exports)) {
    throw new TypeError(`deno.json "exports" must be a string or a map, got ${typeof exports}`);
  }
  const pairs = Object.entries(exports);
  for (const [path, module] of pairs) {
    if (typeof module !== "string") {
      throw new TypeError(`deno.json "exports" entry ${path} must be a module path`);
    }
  }
  return pairs as Array<[string, string]>;
}

/**
 * Runs `deno doc --lint` on each entry point of the project at `root`.
 *
 * @param root the directory holding `deno.json`
 * @returns one result per entry point
 */
export async function docLint(root: string): Promise<DocLintResult[]> {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const results: DocLintResult[] = [];
  for (const [exportPath, module] of entryPoints(config)) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["doc", "--lint", module],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
    results.push({
      exportPath,
      module,
      ok: output.success,
      output: output.success ? "" : text.replace(/\nStack backtrace:[\s\S]*$/, "").trim(),
    });
  }
  return results;
}

if (import.meta.main) {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const results = await docLint(root);
  for (const result of results) {
    if (!result.ok) console.error(result.output);
    console.log(
      `doc-lint ${result.ok ? "ok    " : "FAILED"} ${result.exportPath} (${result.module})`,
    );
  }
  if (results.some((result) => !result.ok)) Deno.exit(1);
}
