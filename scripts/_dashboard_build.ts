/**
 * Bundles the dashboard's client script (`web/dashboard_client.ts`) with esbuild into one
 * minified ES module, in memory: `deno task serve` does it once before it listens and serves
 * the result as the static asset `/assets/dashboard.js` (no CDN, nothing transpiled per
 * request).
 *
 * @module
 */

import * as esbuild from "esbuild";

const ENTRY = new URL("../web/dashboard_client.ts", import.meta.url).pathname;

/**
 * Bundles the client script.
 *
 * @returns the bundled script's text
 */
export async function buildDashboardScript(): Promise<string> {
  try {
    const built = await esbuild.build({
      entryPoints: [ENTRY],
      bundle: true,
      write: false,
      format: "esm",
      platform: "browser",
      target: "es2022",
      minify: true,
      legalComments: "none",
      logLevel: "silent",
    });
    const output = built.outputFiles[0];
    if (output === undefined) throw new Error(`esbuild wrote nothing for ${ENTRY}`);
    return output.text;
  } finally {
    await esbuild.stop();
  }
}
