import assert from "node:assert/strict";
import { type ControlServices, createControlApp } from "./http.ts";
import { JobQueue, jobsPort } from "../app/jobs/jobs.ts";
import { suitesPort } from "../../property-tests/_runner.ts";
import { canonicalPath } from "../app/paths.ts";
import { formatRegion } from "../core/stp/region.ts";
import { denoControlServices, reportOf } from "../app/server/control_services.ts";

const TOKEN = "browser-token-0123456789";

/** An app on a hand-moved clock, over a temp root, with jobs that end at once. */
async function browserFixture(extra: Partial<ControlServices> = {}) {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-auth-" }));
  const clock = { now: 1_000_000 };
  const jobs = new JobQueue(() => Promise.resolve({ done: true }), () => clock.now);
  const services: ControlServices = {
    token: TOKEN,
    roots: [root],
    resolvePath: canonicalPath,
    jobs: jobsPort(jobs),
    listSnapshots: () => Promise.resolve([]),
    storageOccupancy: () => undefined,
    suites: suitesPort(() => []),
    nowMs: () => clock.now,
    sessionIdleMs: 60_000,
    sessionLifetimeMs: 600_000,
    ...extra,
  };
  const app = createControlApp(services);
  const dispose = async () => {
    for (const job of jobs.list()) await jobs.settled(job.id);
    await Deno.remove(root, { recursive: true });
  };
  return { root, clock, app, dispose };
}

function loginRequest(token: string, base = "http://lanfree"): Request {
  return new Request(`${base}/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token }).toString(),
  });
}

/** Logs in through the form: the cookie header to send back, and the page's CSRF token. */
async function logIn(app: ReturnType<typeof createControlApp>) {
  const response = await app.request(loginRequest(TOKEN));
  assert.equal(response.status, 303);
  const setCookie = response.headers.get("set-cookie") ?? "";
  const cookie = setCookie.split(";")[0]!;
  const page = await (await app.request("/", { headers: { cookie } })).text();
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page)?.[1];
  assert.ok(csrf !== undefined, "the dashboard page carries the CSRF token");
  return { cookie, csrf, setCookie };
}

function jobPost(root: string, headers: Record<string, string>): RequestInit {
  return {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify({ kind: "verify", repo: root }),
  };
}

Deno.test("GET / without a session is the login form; a wrong token is refused with no cookie", async () => {
  const f = await browserFixture();
  try {
    const page = await f.app.request("/");
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<form method="post" action="\/login">/);
    const wrong = await f.app.request(loginRequest("not-the-token"));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get("set-cookie"), null);
    assert.match(await wrong.text(), /not this server&#39;s token/);
  } finally {
    await f.dispose();
  }
});

Deno.test("the login sets an HttpOnly, SameSite=Strict session cookie, Secure only over TLS", async () => {
  const f = await browserFixture();
  try {
    const { setCookie } = await logIn(f.app);
    assert.match(setCookie, /^lanfree_session=[A-Za-z0-9_-]{43};/);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.match(setCookie, /Path=\//);
    assert.doesNotMatch(setCookie, /Secure/);
    const tls = await f.app.request(loginRequest(TOKEN, "https://lanfree"));
    assert.match(tls.headers.get("set-cookie") ?? "", /Secure/);
  } finally {
    await f.dispose();
  }
});

Deno.test("a session reads the API; changing anything needs its CSRF token, a bearer request does not", async () => {
  const f = await browserFixture();
  try {
    const { cookie, csrf } = await logIn(f.app);
    assert.equal((await f.app.request("/v1/jobs", { headers: { cookie } })).status, 200);
    const attempts: Record<string, string>[] = [{ cookie }, { cookie, "x-csrf-token": `${csrf}x` }];
    for (const headers of attempts) {
      const refused = await f.app.request("/v1/jobs", jobPost(f.root, headers));
      assert.equal(refused.status, 403);
      assert.equal(refused.headers.get("content-type"), "application/problem+json");
      assert.match((await refused.json()).detail, /x-csrf-token/);
    }
    const started = await f.app.request(
      "/v1/jobs",
      jobPost(f.root, { cookie, "x-csrf-token": csrf }),
    );
    assert.equal(started.status, 202);
    const job = await started.json();
    const cancel = await f.app.request(`/v1/jobs/${job.id}`, {
      method: "DELETE",
      headers: { cookie },
    });
    assert.equal(cancel.status, 403, "DELETE without the CSRF token is refused before anything");
    const bearer = await f.app.request(
      "/v1/jobs",
      jobPost(f.root, { authorization: `Bearer ${TOKEN}` }),
    );
    assert.equal(bearer.status, 202);
    await bearer.body?.cancel();
  } finally {
    await f.dispose();
  }
});

Deno.test("a wrong bearer header is refused even with a live session cookie", async () => {
  const f = await browserFixture();
  try {
    const { cookie } = await logIn(f.app);
    const response = await f.app.request("/v1/jobs", {
      headers: { cookie, authorization: "Bearer wrong" },
    });
    assert.equal(response.status, 401);
    await response.body?.cancel();
  } finally {
    await f.dispose();
  }
});

Deno.test("logout needs the CSRF token, ends the session and clears the cookie", async () => {
  const f = await browserFixture();
  try {
    const { cookie, csrf } = await logIn(f.app);
    assert.equal(
      (await f.app.request("/logout", { method: "POST", headers: { cookie } })).status,
      403,
    );
    const out = await f.app.request("/logout", {
      method: "POST",
      headers: { cookie, "x-csrf-token": csrf },
    });
    assert.equal(out.status, 204);
    assert.match(out.headers.get("set-cookie") ?? "", /^lanfree_session=;.*Max-Age=0/);
    const after = await f.app.request("/v1/jobs", { headers: { cookie } });
    assert.equal(after.status, 401);
    await after.body?.cancel();
    assert.match(
      await (await f.app.request("/", { headers: { cookie } })).text(),
      /action="\/login"/,
    );
  } finally {
    await f.dispose();
  }
});

Deno.test("a session unused past its idle time is refused and the page asks to log in again", async () => {
  const f = await browserFixture();
  try {
    const { cookie } = await logIn(f.app);
    f.clock.now += 59_999;
    assert.equal((await f.app.request("/v1/jobs", { headers: { cookie } })).status, 200);
    f.clock.now += 60_000;
    const expired = await f.app.request("/v1/jobs", { headers: { cookie } });
    assert.equal(expired.status, 401);
    assert.match((await expired.json()).detail, /log in/);
  } finally {
    await f.dispose();
  }
});

Deno.test("GET /v1/region is the region show report, 404 without a region", async () => {
  const formatted = formatRegion({
    stgs: [{ id: 7, extentCount: 4, ephemeralPortMin: 50000, ephemeralPortMax: 50010 }],
    extentBytes: 4096,
    blockCount: 6,
    hostCount: 2,
    ioTimeoutMs: 100,
    leaseMs: 100,
    backlogMax: 2,
  }, crypto.randomUUID());
  assert.ok(formatted.ok);
  const region = formatted.value;
  const f = await browserFixture({ regionReport: () => reportOf(region, 5) });
  const none = await browserFixture();
  try {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const report = await (await f.app.request("/v1/region", { headers: auth })).json();
    assert.deepEqual(report, JSON.parse(JSON.stringify(reportOf(region, 5))));
    assert.equal(report.blocksByState.free, 6);
    assert.equal(report.stgs[0].id, 7);
    const missing = await none.app.request("/v1/region", { headers: auth });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await f.dispose();
    await none.dispose();
  }
});

Deno.test("the dashboard script is served as JavaScript when the server has it, 404 otherwise", async () => {
  const f = await browserFixture({ dashboardScript: "console.log(1)" });
  const none = await browserFixture();
  try {
    const script = await f.app.request("/assets/dashboard.js");
    assert.equal(script.status, 200);
    assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(await script.text(), "console.log(1)");
    const missing = await none.app.request("/assets/dashboard.js");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await f.dispose();
    await none.dispose();
  }
});

Deno.test("the page sets a content security policy that allows only this server's script", async () => {
  const f = await browserFixture();
  try {
    const page = await f.app.request("/");
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    await page.body?.cancel();
  } finally {
    await f.dispose();
  }
});

Deno.test("GET /v1/snapshots of a directory that holds no repository is a 404 problem, not a 500", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-norepo-" }));
  const app = createControlApp(denoControlServices({
    token: TOKEN,
    roots: [root],
    jobs: new JobQueue(() => Promise.resolve({}), () => Date.now()),
    region: null,
    suites: () => [],
  }));
  try {
    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const repo of [root, `${root}/missing`]) {
      const response = await app.request(`/v1/snapshots?repo=${encodeURIComponent(repo)}`, {
        headers: auth,
      });
      assert.equal(response.status, 404, repo);
      assert.match((await response.json()).detail, /repository/);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a JSON body is read as JSON whatever its content type says (curl -d sends a form type)", async () => {
  const f = await browserFixture();
  try {
    const body = JSON.stringify({ kind: "verify", repo: f.root });
    for (const type of [undefined, "application/x-www-form-urlencoded", "text/plain"]) {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (type !== undefined) headers["content-type"] = type;
      const response = await f.app.request("/v1/jobs", { method: "POST", headers, body });
      assert.equal(response.status, 202, `content type ${type}`);
      await response.body?.cancel();
    }
    const malformed = await f.app.request("/v1/jobs", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: "{not json",
    });
    assert.equal(malformed.status, 400);
    assert.match((await malformed.json()).detail, /not valid JSON/);
  } finally {
    await f.dispose();
  }
});

Deno.test("the README lists every route of the app exactly, and no other", async () => {
  const f = await browserFixture();
  try {
    const routes = (f.app as unknown as { routes: Array<{ method: string; path: string }> }).routes
      .filter((route) => route.method !== "ALL")
      .map((route) => `${route.method} ${route.path}`);
    const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
    const listed = [...readme.matchAll(/^\| `(GET|POST|DELETE|PUT|PATCH) ([^`?]+)[^`]*` +\|/gm)]
      .map((match) => `${match[1]} ${match[2]}`);
    assert.deepEqual([...new Set(routes)].sort(), [...listed].sort());
  } finally {
    await f.dispose();
  }
});

Deno.test("a client past its login attempts gets 429 problem+json with Retry-After, even with the right token", async () => {
  const f = await browserFixture({ loginAttemptsMax: 3, loginWindowMs: 60_000 });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, f.app.fetch);
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    for (let i = 0; i < 3; i++) {
      const wrong = await fetch(loginRequest(`guess-${i}`, base));
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();
    }
    const refused = await fetch(loginRequest(TOKEN, base), { redirect: "manual" });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "60");
    assert.equal(refused.headers.get("content-type"), "application/problem+json");
    const body = await refused.json();
    assert.equal(body.status, 429);
    assert.match(body.detail, /3 login attempts per 60 s from 127\.0\.0\.1/);
    assert.equal(refused.headers.get("set-cookie"), null, "no session for a refused attempt");
    const bearer = await fetch(`${base}/v1/jobs`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(bearer.status, 200, "the bearer header is not throttled by the form's limit");
    await bearer.body?.cancel();
    f.clock.now += 60_000;
    const later = await fetch(loginRequest(TOKEN, base), { redirect: "manual" });
    assert.equal(later.status, 303, "a new window lets the right token in");
    await later.body?.cancel();
  } finally {
    await server.shutdown();
    await f.dispose();
  }
});
