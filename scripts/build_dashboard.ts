/**
 * `deno task dashboard`: bundles the dashboard's client script (`web/dashboard_client.ts`) with
 * esbuild into one minified ES module, `dist/dashboard/dashboard.js`. `deno task serve` runs it
 * first and serves the file as the static asset `/assets/dashboard.js` (no CDN, nothing
 * transpiled per request, and the server process needs no permission to run esbuild).
 *
 * @module
 */

import * as esbuild from "esbuild";

const ENTRY = new URL("../web/dashboard_client.ts", import.meta.url).pathname;

/** Where the bundled script goes, and where `deno task serve` reads it. */
export const DASHBOARD_SCRIPT_PATH =
  new URL("../dist/dashboard/dashboard.js", import.meta.url).pathname;

/**
 * Bundles the client script into a file.
 *
 * @param outPath the file to write (its directory is made)
 * @returns the script's size in bytes
 */
export async function buildDashboardScript(outPath = DASHBOARD_SCRIPT_PATH): Promise<number> {
  try {
    await esbuild.build({
      entryPoints: [ENTRY],
      outfile: outPath,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      minify: true,
      legalComments: "none",
      logLevel: "silent",
    });
  } finally {
    await esbuild.stop();
  }
  return (await Deno.stat(outPath)).size;
}

if (import.meta.main) {
  const bytes = await buildDashboardScript();
  console.log(`dashboard: ${DASHBOARD_SCRIPT_PATH} (${bytes} bytes)`);
}
