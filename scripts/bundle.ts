/**
 * `deno task bundle`: writes `dist/lanfree.mjs`, a platform-neutral ESM bundle of `src/edge.ts`
 * (pure cores, conformance suites, the Hono control app) with its npm dependencies inlined, and
 * `dist/lanfree.d.mts`, its type declarations in one self-contained file (the npm packages'
 * types inlined too, so a consumer needs nothing else installed).
 *
 * The code is bundled by esbuild. The declarations are emitted by the TypeScript compiler
 * (`typescript` from npm, the version lanfree pins) and bundled by rollup-plugin-dts: `deno doc
 * --json` describes the API but is not a `.d.ts`, and dts-bundle-generator, tried first, could
 * not inline zod's namespace re-exports correctly (the result did not type-check). Rollup runs
 * as its WebAssembly build (`@rollup/wasm-node`): the native one is a Node addon, which Deno
 * loads only with `--allow-ffi`.
 *
 * @module
 */

import * as esbuild from "esbuild";
import { type Plugin, rollup } from "@rollup/wasm-node";
import { dts } from "rollup-plugin-dts";

const ENTRY = new URL("../src/edge.ts", import.meta.url).pathname;

/** Where `deno task bundle` writes the bundle and its declarations. */
export const DIST_DIR: string = new URL("../dist", import.meta.url).pathname;

/** What {@link buildBundle} wrote. */
export interface BuiltBundle {
  /** The ES module. */
  readonly modulePath: string;
  /** Its type declarations (beside it, so TypeScript finds them for the module). */
  readonly typesPath: string;
  /** Size of the module. */
  readonly moduleBytes: number;
  /** Size of the declarations. */
  readonly typesBytes: number;
}

/** Bundles the code with esbuild into `modulePath`. */
async function buildModule(modulePath: string): Promise<void> {
  try {
    await esbuild.build({
      entryPoints: [ENTRY],
      outfile: modulePath,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      mainFields: ["module", "main"],
      conditions: ["import", "module", "default"],
      minify: true,
      legalComments: "eof",
      logLevel: "silent",
    });
  } finally {
    await esbuild.stop();
  }
}

/**
 * Resolves a bare import made by a file inside `node_modules` from the file's real path. Deno's
 * `node_modules/<name>` entries are symlinks into `node_modules/.deno/`, and a package's own
 * dependencies (fast-check's pure-rand) sit beside its real directory, not beside the symlink.
 */
const resolveFromRealPath: Plugin = {
  name: "resolve-from-real-path",
  async resolveId(source, importer, options) {
    if (importer === undefined || source.startsWith(".") || source.startsWith("/")) return null;
    const real = await Deno.realPath(importer).catch(() => importer);
    if (real === importer) return null;
    return await this.resolve(source, real, { ...options, skipSelf: true });
  },
};

/** Emits and bundles the declarations of the entry into `typesPath`. */
async function buildTypes(typesPath: string): Promise<void> {
  const bundle = await rollup({
    input: ENTRY,
    onwarn: (warning) => {
      throw new Error(`declarations: ${warning.message}`);
    },
    plugins: [
      resolveFromRealPath,
      dts({
        respectExternal: true,
        compilerOptions: {
          target: 99, // ESNext
          module: 99, // ESNext
          moduleResolution: 100, // Bundler
          allowImportingTsExtensions: true,
          lib: ["lib.es2024.d.ts", "lib.dom.d.ts"],
          types: [],
          strict: true,
        },
      }),
    ],
  });
  try {
    await bundle.write({ file: typesPath, format: "es" });
  } finally {
    await bundle.close();
  }
}

/**
 * Builds the bundle and its declarations.
 *
 * @param outDir the directory to write `lanfree.mjs` and `lanfree.d.mts` into (created if
 *   missing); `dist/` by default
 * @returns the paths and sizes written
 */
export async function buildBundle(outDir: string = DIST_DIR): Promise<BuiltBundle> {
  await Deno.mkdir(outDir, { recursive: true });
  const modulePath = `${outDir}/lanfree.mjs`;
  const typesPath = `${outDir}/lanfree.d.mts`;
  await buildModule(modulePath);
  await buildTypes(typesPath);
  return {
    modulePath,
    typesPath,
    moduleBytes: (await Deno.stat(modulePath)).size,
    typesBytes: (await Deno.stat(typesPath)).size,
  };
}

if (import.meta.main) {
  const built = await buildBundle();
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
  console.log(`bundle: wrote ${built.modulePath} (${kib(built.moduleBytes)})`);
  console.log(`bundle: wrote ${built.typesPath} (${kib(built.typesBytes)})`);
}
