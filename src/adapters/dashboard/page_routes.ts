/**
 * The dashboard's routes: `GET /` (the login form, or the dashboard for a browser with a live
 * session) and `GET /assets/dashboard.js` (the client script, bundled by esbuild with
 * `deno task dashboard`, which `deno task serve` runs first). Both are public: the page holds no data, the script fetches it from `/v1`
 * with the session cookie.
 *
 * @module
 */

import { Hono } from "hono";
import type { ControlServices } from "../http.ts";
import { sessionOf } from "../http_auth.ts";
import type { SessionStore } from "../http_session.ts";
import { problem } from "../http_problem.ts";
import { dashboardPage, loginPage } from "./page.ts";

/** The page loads only this server's script and styles; nothing may frame it. */
const PAGE_HEADERS = {
  "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; " +
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/**
 * The page and its script.
 *
 * @param services the bundled script (`dashboardScript`)
 * @param sessions the browser sessions
 * @returns the sub-app (mount at `/`)
 */
export function pageRoutes(
  services: Pick<ControlServices, "dashboardScript">,
  sessions: SessionStore,
): Hono {
  const app = new Hono();
  app.get("/", (c) => {
    const session = sessionOf(c, sessions);
    const page = session === undefined ? loginPage() : dashboardPage(session.csrfToken);
    return c.html(page, 200, PAGE_HEADERS);
  });
  app.get("/assets/dashboard.js", (c) => {
    const script = services.dashboardScript;
    if (script === undefined) {
      problem(404, "No dashboard script", "this server was started without the bundled script");
    }
    return c.body(script, 200, {
      "content-type": "text/javascript; charset=utf-8",
      "x-content-type-options": "nosniff",
      "cache-control": "no-cache",
    });
  });
  return app;
}
