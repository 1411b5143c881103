/**
 * The dashboard in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by
 * puppeteer-core): `serve` with a region file, a storage listener held by `region recv`, a
 * backup started from the page's form, and the page checked against the region and the jobs.
 * Screenshots go to `dist/screenshots/`. Without Chromium the test fails on CI (`CI=true`;
 * `.ci/run` installs it) and is skipped with a loud message elsewhere.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { buildDashboardScript } from "./build_dashboard.ts";
import { region } from "./_region_testing.ts";
import { makeTempDirectory, removeDirectory, unlinkFile } from "../src/adapters/_libc_files.ts";
import { cleanUpOnSignal, killQuietly, removeQuietly, sweepStaleScratch } from "./_leftovers.ts";

/** The little of the DOM the in-page functions use (this file is checked without the DOM lib). */
interface PageElement {
  readonly dataset: Record<string, string | undefined>;
  readonly title: string;
  readonly style: { readonly width: string };
  readonly textContent: string | null;
}
declare const document: {
  getElementById(id: string): unknown;
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): ArrayLike<PageElement> & Iterable<PageElement>;
  readonly documentElement: { readonly scrollWidth: number };
};
declare const MutationObserver: new (
  callback: (records: Array<{ target: unknown }>) => void,
) => { observe(target: unknown, options: unknown): void };

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOTS = new URL("../dist/screenshots/", import.meta.url).pathname;
const SERVE = new URL("./serve.ts", import.meta.url).pathname;
const REGION_SCRIPT = new URL("./region.ts", import.meta.url).pathname;
const TOKEN = `browser-${crypto.randomUUID()}`;
const LISTEN_PORT = 7000;
const ON_CI = Deno.env.get("CI") === "true";
const HAVE_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (!HAVE_CHROMIUM && !ON_CI) {
  console.warn(
    `\n!!! SKIPPED: the dashboard browser test needs Chromium at ${CHROMIUM} ` +
      "(apt-get install chromium; .ci/run installs it). With CI=true it fails instead. !!!\n",
  );
}

/** The flags Chromium needs here (without the background-networking ones it is refused). */
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A source tree of `files` files of 16 MiB of random bytes. */
async function makeSource(directory: string, files: number): Promise<number> {
  await Deno.mkdir(directory, { recursive: true });
  const content = new Uint8Array(16 * 1024 * 1024);
  for (let offset = 0; offset < content.length; offset += 65536) {
    crypto.getRandomValues(content.subarray(offset, offset + 65536));
  }
  for (let i = 0; i < files; i++) await Deno.writeFile(`${directory}/part-${i}.bin`, content);
  return files * content.length;
}

/** Reads lines from a child's stdout until one matches (bounded by the stream's end). */
async function lineMatching(stream: ReadableStream<Uint8Array>, pattern: RegExp) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  try {
    for (let reads = 0; reads < 10_000; reads++) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const found = pattern.exec(buffered);
      if (found !== null) return found;
    }
  } finally {
    reader.releaseLock();
  }
  throw new Error(`serve ended without printing ${pattern}: ${buffered}`);
}

/** What `deno task region show --json` reports now. */
async function regionShow(path: string) {
  const shown = await region(["show", path, "--json"]);
  assert.equal(shown.code, 0, shown.stderr);
  return JSON.parse(shown.stdout) as {
    blocksByState: Record<string, number>;
    blocks: Array<{ state: string; owner: number; stg: number | null; port: number | null }>;
  };
}

/** Everything that went wrong on a page: console errors, page errors, failed requests. */
function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${String(error)}`));
  page.on("requestfailed", (request) => {
    // An EventSource the page closes when its job ends is aborted by the browser: not a failure.
    if (request.failure()?.errorText === "net::ERR_ABORTED" && request.url().includes("/events")) {
      return;
    }
    problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
  });
  return problems;
}

/** Submits the login form with a token. */
async function submitLogin(page: Page, token: string): Promise<void> {
  await page.type("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
}

interface Setup {
  readonly base: string;
  readonly regionPath: string;
  readonly root: string;
  readonly sourceBytes: number;
  readonly recv: Deno.ChildProcess;
  readonly cleanup: () => Promise<void>;
}

/** A region file, `region recv` listening in it, and `serve` over it. */
async function startServer(): Promise<Setup> {
  sweepStaleScratch();
  const shm = makeTempDirectory("/dev/shm/lanfree-test-dash-");
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-dash-" }));
  const regionPath = `${shm}/region`;
  const created = await region([
    "create",
    "--path",
    regionPath,
    "--extent-bytes",
    "1MiB",
    "--control-blocks",
    "24",
    "--hosts",
    "4",
    // The region's default lease. A 500 ms lease failed this test under load: `region recv`,
    // stalled past its lease, was counted dead and its listening block reclaimed (the region
    // showed 24 free blocks). The dead host below is still seen within the 15 s it is given.
    "--lease-ms",
    "2000",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const sourceBytes = await makeSource(`${root}/source`, 8);
  await Deno.mkdir(`${root}/repo`);
  const recv = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-ffi", "--allow-env", REGION_SCRIPT]
      .concat(["recv", regionPath, "--port", String(LISTEN_PORT), "--discard"]),
    stdout: "null",
    stderr: "null",
  }).spawn();
  const serve = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"]
      .concat(["--allow-ffi", SERVE, "--port", "0", "--root", root, "--region", regionPath]),
    stdout: "piped",
    stderr: "inherit",
    env: { LANFREE_TOKEN: TOKEN },
  }).spawn();
  const cleanup = async () => {
    forget();
    for (const child of [serve, recv]) {
      try {
        child.kill("SIGKILL");
      } catch { /* already ended */ }
      await child.status;
    }
    await serve.stdout.cancel().catch(() => {});
    try {
      unlinkFile(regionPath);
    } catch { /* never created */ }
    removeDirectory(shm);
    await Deno.remove(root, { recursive: true });
  };
  // Stopped by a signal: the children, the region and the directories go too (_leftovers.ts).
  const forget = cleanUpOnSignal(async () => {
    killQuietly(serve);
    killQuietly(recv);
    removeQuietly(shm);
    await Deno.remove(root, { recursive: true }).catch(() => {});
  });
  try {
    const listening = await lineMatching(serve.stdout, /http:\/\/127\.0\.0\.1:(\d+)/);
    // The listener is up once the region shows its block listening.
    for (let tries = 0; tries < 300; tries++) {
      const report = await regionShow(regionPath);
      if (report.blocks.some((b) => b.state === "listening")) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return {
      base: `http://127.0.0.1:${listening[1]}`,
      regionPath,
      root,
      sourceBytes,
      recv,
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function launch(): Promise<{ browser: Browser; close: () => Promise<void> }> {
  const profile = await Deno.makeTempDir({ prefix: "lanfree-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: CHROMIUM_FLAGS,
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  };
}

Deno.test({
  name: "the dashboard in Chromium: login, the region map, a backup moving, its snapshot, CSRF",
  ignore: !HAVE_CHROMIUM && !ON_CI,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!HAVE_CHROMIUM) {
      throw new Error(`CI=true and no Chromium at ${CHROMIUM}: .ci/run must apt-get install it`);
    }
    await buildDashboardScript();
    await Deno.mkdir(SCREENSHOTS, { recursive: true });
    const setup = await startServer();
    const { browser, close } = await launch();
    try {
      await wrongTokenIsRefused(browser, setup);
      const page = await browser.newPage();
      const problems = watchProblems(page);
      await page.setViewport({ width: 1280, height: 800 });
      await page.goto(setup.base);
      await submitLogin(page, TOKEN);
      await backupMoves(page, setup);
      await networkBackupShows(page, setup);
      await regionMatches(page, setup);
      await deadHostShows(page, setup);
      await restoreFinishes(page, setup);
      await snapshotRowShows(page, setup);
      await failedJobShows(page, setup);
      await page.screenshot({ path: `${SCREENSHOTS}dashboard-1280x800.png`, fullPage: true });
      await page.setViewport({ width: 390, height: 844 });
      await page.screenshot({ path: `${SCREENSHOTS}dashboard-390x844.png`, fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(overflow <= 390, `the phone layout scrolls sideways: ${overflow} px wide`);
      assert.deepEqual(problems, [], "no console errors, failed requests or error responses");
      await refusalsShow(page, setup);
    } finally {
      await close();
      await setup.cleanup();
    }
  },
});

async function wrongTokenIsRefused(browser: Browser, setup: Setup): Promise<void> {
  const context = await browser.createBrowserContext();
  try {
    const page = await context.newPage();
    await page.goto(setup.base);
    await submitLogin(page, "not-the-token");
    const said = await page.$eval("#login-error", (e) => e.textContent ?? "");
    assert.match(said, /not this server's token/);
    assert.deepEqual(await context.cookies(), [], "a wrong token gets no session cookie");
  } finally {
    await context.close();
  }
}

/** Starts a backup from the form; its bytes and bar advance, it ends with its snapshot listed. */
async function backupMoves(page: Page, setup: Setup): Promise<void> {
  await page.waitForSelector("#region-cells .cell");
  // Record every byte count a job card shows (each SSE progress event sets data-bytes, after
  // data-storage-bytes): "bytes/storage bytes".
  await page.evaluate(() => {
    const seen: string[] = [];
    (globalThis as unknown as { seenBytes: string[] }).seenBytes = seen;
    new MutationObserver((records) => {
      for (const record of records) {
        const { bytes, storageBytes } = (record.target as PageElement).dataset;
        const value = `${bytes}/${storageBytes}`;
        if (bytes !== undefined && seen.at(-1) !== value) seen.push(value);
      }
    }).observe(document.getElementById("jobs-body")!, {
      subtree: true,
      attributes: true,
      attributeFilter: ["data-bytes"],
    });
  });
  await page.type("#form-backup input[name=source]", `${setup.root}/source`);
  await page.type("#form-backup input[name=repo]", `${setup.root}/repo`);
  await page.click("#form-backup button[type=submit]");
  const card = await page.waitForSelector(".job[data-state]");
  assert.ok(card !== null);
  // A frame of the job running with a third or more of its bytes moved, if it is that slow.
  await page.waitForFunction(
    (third: number) => {
      const running = document.querySelector(".job[data-state=running]");
      return Number(running?.dataset.bytes ?? 0) >= third;
    },
    { timeout: 120_000 },
    setup.sourceBytes / 3,
  ).then(() => page.screenshot({ path: `${SCREENSHOTS}dashboard-running-1280x800.png` }))
    .catch(() => console.warn("the job ended before a running frame could be shot"));
  await page.waitForSelector(".job[data-state=succeeded]", { timeout: 180_000 });
  const seen = await page.evaluate(() =>
    (globalThis as unknown as { seenBytes: string[] }).seenBytes
  );
  const moving = [...new Set(seen.map((pair) => Number(pair.split("/")[0])))].filter((b) => b > 0);
  const storageWhileRunning = seen.map((pair) => pair.split("/").map(Number))
    .filter(([bytes, storage]) => bytes! < setup.sourceBytes && storage! > 0);
  assert.ok(storageWhileRunning.length > 0, `storage bytes showed while it ran: ${seen}`);
  assert.ok(moving.length >= 2, `the bytes advanced in steps while it ran: ${seen.join(", ")}`);
  for (let i = 1; i < moving.length; i++) {
    assert.ok(moving[i]! > moving[i - 1]!, `bytes never go back: ${moving.join(", ")}`);
  }
  const jobs = await (await fetch(`${setup.base}/v1/jobs`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  })).json();
  // Archive bytes throughout (headers included), so the last is a little more than the source.
  assert.equal(moving.at(-1), jobs[0].result.archiveBytes);
  assert.ok(moving.at(-1)! >= setup.sourceBytes);
  const width = await page.$eval(
    ".job .bar > div",
    (e) => (e as unknown as PageElement).style.width,
  );
  assert.equal(width, "100%");
  const snapshot: string = jobs[0].result.snapshot;
  assert.equal(jobs[0].result.dataPath, "storage");
  const text = await page.$eval(".job .outcome", (e) => e.textContent ?? "");
  assert.match(text, new RegExp(`snapshot ${snapshot}`));
  await page.waitForSelector(`#snapshots-body tr[data-snapshot="${snapshot}"]`, {
    timeout: 10_000,
  });
  assert.equal(await page.$(".job .cancel:not([hidden])"), null, "an ended job has no Cancel");
}

/** A backup asked to use the network only: the card says so once it ends. */
async function networkBackupShows(page: Page, setup: Setup): Promise<void> {
  await page.select("#form-backup select[name=channel]", "network");
  await page.click("#form-backup button[type=submit]");
  await page.waitForFunction(
    () => document.querySelectorAll(".job[data-state=succeeded]").length === 2,
    {
      timeout: 180_000,
    },
  );
  const text = await page.$eval(".job .outcome", (e) => e.textContent ?? "");
  assert.match(text, /data path network/);
  const jobs = await (await fetch(`${setup.base}/v1/jobs`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  })).json();
  assert.equal(jobs[0].request.channel, "network", "the form's channel reached the job");
}

/** The restore form restores the first backup's snapshot; the files on disk are the source's. */
async function restoreFinishes(page: Page, setup: Setup): Promise<void> {
  const jobs = await (await fetch(`${setup.base}/v1/jobs`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  })).json();
  const snapshot: string = jobs.at(-1).result.snapshot;
  const target = `${setup.root}/restored`;
  await page.type("#form-restore input[name=repo]", `${setup.root}/repo`);
  await page.type("#form-restore input[name=snapshot]", snapshot);
  await page.type("#form-restore input[name=target]", target);
  await page.click("#form-restore button[type=submit]");
  await page.waitForFunction(
    () => document.querySelectorAll(".job[data-state=succeeded]").length === 3,
    { timeout: 180_000 },
  );
  const what = await page.$eval(".job .what", (e) => e.textContent ?? "");
  assert.equal(what, `${setup.root}/repo → ${target}`, "the newest card is the restore");
  const shown = await page.$eval(".job", (e) => (e as unknown as PageElement).dataset.bytes);
  assert.equal(shown, String(setup.sourceBytes), "the restore's card ends with what it wrote");
  const restored = [...Deno.readDirSync(target)].map((e) => e.name).sort();
  const source = [...Deno.readDirSync(`${setup.root}/source`)].map((e) => e.name).sort();
  assert.deepEqual(restored, source);
  for (const name of source) {
    const [want, got] = await Promise.all([
      Deno.readFile(`${setup.root}/source/${name}`),
      Deno.readFile(`${target}/${name}`),
    ]);
    assert.equal(Buffer.compare(want, got), 0, `${name} restored as it was backed up`);
  }
}

/** The first backup's snapshot row: time, kind, files, bytes per channel, parent. */
async function snapshotRowShows(page: Page, setup: Setup): Promise<void> {
  const jobs = await (await fetch(`${setup.base}/v1/jobs`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  })).json();
  const snapshot: string = jobs.at(-1).result.snapshot;
  const cells = await page.$$eval(
    `#snapshots-body tr[data-snapshot="${snapshot}"] td`,
    (all) => all.map((cell) => cell.textContent ?? ""),
  );
  const [id, time, kind, files, storage, network, parent] = cells;
  assert.equal(id, snapshot);
  assert.ok(!Number.isNaN(Date.parse(time!)) || /\d/.test(time!), `a time: ${time}`);
  assert.deepEqual([kind, files, parent], ["fs", "8", "full"]);
  assert.match(storage!, /^1[23]\d(\.\d)? MiB$|^128/, `storage bytes: ${storage}`);
  assert.match(network!, / (B|KiB)$/, `only control traffic on the network: ${network}`);
}

/** A job that fails shows its error on its card. */
async function failedJobShows(page: Page, setup: Setup): Promise<void> {
  await page.type("#form-verify input[name=repo]", `${setup.root}/source`);
  await page.click("#form-verify button[type=submit]");
  await page.$eval("#form-verify input[name=repo]", (e) => {
    (e as unknown as { value: string }).value = "";
  });
  await page.waitForSelector(".job[data-state=failed] .outcome .error", { timeout: 60_000 });
  const said = await page.$eval(".job[data-state=failed] .outcome .error", (e) => e.textContent);
  assert.match(said ?? "", /source/, `the job's error names the path: ${said}`);
}

/** One cell per control block, holding the states `region show` reports. */
async function regionMatches(page: Page, setup: Setup): Promise<void> {
  const report = await regionShow(setup.regionPath);
  const expected = Object.fromEntries(
    Object.entries(report.blocksByState).filter(([, count]) => count > 0),
  );
  assert.equal(
    expected.listening,
    1,
    `region recv holds one listening block (blocks by state: ${JSON.stringify(expected)})`,
  );
  // The page reads the region every second: wait for a reading after the job's blocks went.
  await page.waitForFunction(
    (want: Record<string, number>) => {
      const counts: Record<string, number> = {};
      for (const cell of document.querySelectorAll("#region-cells .cell")) {
        counts[cell.dataset.state!] = (counts[cell.dataset.state!] ?? 0) + 1;
      }
      return JSON.stringify(counts, Object.keys(counts).sort()) ===
        JSON.stringify(want, Object.keys(want).sort());
    },
    { timeout: 15_000 },
    expected,
  );
  const cells = await page.$$eval("#region-cells .cell", (all) => all.length);
  assert.equal(cells, 24, "one cell per control block");
  const listener = report.blocks.find((b) => b.state === "listening")!;
  const title = await page.$eval(
    "#region-cells .cell[data-state=listening]",
    (e) => (e as unknown as PageElement).title,
  );
  assert.match(title, new RegExp(`owner host ${listener.owner}, STG 1 port ${LISTEN_PORT}`));
}

/** A killed host shows as dead (its lease ran out) until someone reclaims it. */
async function deadHostShows(page: Page, setup: Setup): Promise<void> {
  setup.recv.kill("SIGKILL");
  await setup.recv.status;
  await page.waitForSelector("#region-hosts td.status-dead", { timeout: 15_000 });
}

/** A request without the CSRF token is refused; a form's problem+json detail is shown. */
async function refusalsShow(page: Page, setup: Setup): Promise<void> {
  await page.setViewport({ width: 1280, height: 800 });
  const status = await page.evaluate(async (repo: string) => {
    const response = await fetch("/v1/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "verify", repo }),
    });
    return response.status;
  }, `${setup.root}/repo`);
  assert.equal(status, 403, "a POST without the CSRF token is refused");
  await page.type("#form-verify input[name=repo]", "/etc");
  await page.click("#form-verify button[type=submit]");
  await page.waitForFunction(() =>
    /outside the directories/.test(document.querySelector("#form-verify output")?.textContent ?? "")
  );
  await Promise.all([page.waitForNavigation(), page.click("#logout")]);
  assert.ok(await page.$("#token"), "after logout the login form shows");
  const after = await page.evaluate(async () => (await fetch("/v1/jobs")).status);
  assert.equal(after, 401);
}
