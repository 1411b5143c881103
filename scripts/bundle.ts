/**
 * `deno task bundle`: writes `dist/lanfree.mjs`, a platform-neutral ESM bundle of `src/edge.ts`
 * (pure cores, conformance suites, the Hono control app) with its npm dependencies inlined.
 *
 * @module
 */

import * as esbuild from "esbuild";

/** Where the bundle goes. */
export const BUNDLE_PATH = new URL("../dist/lanfree.mjs", import.meta.url).pathname;

/**
 * Builds the bundle.
 *
 * @returns its size in bytes
 */
export async function buildBundle(): Promise<number> {
  try {
    const result = await esbuild.build({
      entryPoints: [new URL("../src/edge.ts", import.meta.url).pathname],
      outfile: BUNDLE_PATH,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      mainFields: ["module", "main"],
      conditions: ["import", "module", "default"],
      minify: true,
      legalComments: "eof",
      metafile: true,
      logLevel: "silent",
    });
    return result.metafile.outputs[Object.keys(result.metafile.outputs)[0]!]!.bytes;
  } finally {
    await esbuild.stop();
  }
}

if (import.meta.main) {
  const bytes = await buildBundle();
  console.log(`bundle: wrote ${BUNDLE_PATH} (${(bytes / 1024).toFixed(1)} KiB)`);
}
