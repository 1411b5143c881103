/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="esnext" />
/**
 * The dashboard's script, run in the browser (bundled by esbuild into `/assets/dashboard.js`).
 * It polls the region report and the jobs, follows each running job's SSE events for live
 * per-channel throughput, lists snapshots per repository, and posts the job forms with the
 * session's CSRF token, showing a problem+json `detail` when the API refuses.
 *
 * @module
 */

/** How often the region and the job list are read, ms. */
const POLL_MS = 1000;
/** Throughput samples kept per job (the chart's width). */
const SAMPLES_MAX = 120;
/** How often a running job's throughput is sampled, ms (events arriving together share one). */
const SAMPLE_MS = 500;

const csrfToken = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ??
  "";

/** An error the API answered with (its problem+json detail). */
class ApiError extends Error {
  constructor(readonly status: number, detail: string) {
    super(detail);
  }
}

/** Calls the API with the session cookie (and the CSRF token when it changes something). */
async function api(path: string, init: RequestInit = {}): Promise<unknown> {
  const headers = new Headers(init.headers);
  const method = init.method ?? "GET";
  if (method !== "GET") headers.set("x-csrf-token", csrfToken);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  const response = await fetch(path, { ...init, headers, credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/";
    throw new ApiError(401, "the session has ended: log in again");
  }
  const text = await response.text();
  const body = text === "" ? null : JSON.parse(text);
  if (!response.ok) throw new ApiError(response.status, body?.detail ?? response.statusText);
  return body;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function bytes(count: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A table in a box that scrolls sideways on a narrow screen. */
function scrolling(inner: HTMLElement): HTMLElement {
  const box = element("div", { class: "scroll" });
  box.append(inner);
  return box;
}

function table(headings: string[], rows: string[][]): HTMLTableElement {
  const made = element("table");
  const head = made.createTHead().insertRow();
  for (const heading of headings) head.append(element("th", {}, heading));
  const body = made.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const cell of row) tr.insertCell().textContent = cell;
  }
  return made;
}

// ---- the region -------------------------------------------------------------------------

interface RegionReport {
  regionId: string;
  regionBytes: number;
  extentBytes: number;
  leaseMs: number;
  stgs: Array<{
    id: number;
    lengthBytes: number;
    extents: { total: number; used: number; free: number };
    ephemeralPorts: { min: number; max: number };
    portsInUse: number[];
  }>;
  blocksByState: Record<string, number>;
  blocks: Array<{
    index: number;
    state: string;
    owner: number;
    generation: number;
    stg: number | null;
    port: number | null;
    problem: string | null;
  }>;
  hosts: Array<{
    hostId: number;
    status: string;
    incarnation: number;
    pid: number;
    leaseAgeMs: number | null;
  }>;
}

function regionMap(report: RegionReport): HTMLElement {
  const total = Object.values(report.blocksByState).reduce((sum, n) => sum + n, 0);
  const byIndex = new Map(report.blocks.map((block) => [block.index, block]));
  const cells = element("div", { class: "cells", id: "region-cells" });
  for (let index = 0; index < total; index++) {
    const block = byIndex.get(index);
    const cell = element("div", { class: "cell", "data-state": block?.state ?? "free" });
    cell.dataset.index = String(index);
    cell.title = block === undefined
      ? `#${index} free`
      : `#${index} ${block.state}, owner host ${block.owner}` +
        (block.stg === null ? "" : `, STG ${block.stg} port ${block.port}`) +
        (block.problem === null ? "" : `; corrupt: ${block.problem}`);
    if (block?.problem) cell.classList.add("corrupt");
    cells.append(cell);
  }
  return cells;
}

function renderRegion(report: RegionReport): void {
  const body = document.getElementById("region-body")!;
  const legend = element("div", { class: "legend" });
  for (const [state, count] of Object.entries(report.blocksByState)) {
    if (count === 0) continue;
    const key = element("span");
    key.append(element("i", { class: "cell", "data-state": state }), `${state} ${count}`);
    legend.append(key);
  }
  const stgs = table(
    ["STG", "extents used / free", "size", "ports in use"],
    report.stgs.map((stg) => [
      String(stg.id),
      `${stg.extents.used} / ${stg.extents.free}`,
      bytes(stg.lengthBytes),
      stg.portsInUse.length === 0 ? "none" : stg.portsInUse.join(", "),
    ]),
  );
  const hosts = table(
    ["host", "status", "pid", "incarnation", "lease age"],
    report.hosts.map((host) => [
      String(host.hostId),
      host.status,
      host.pid === 0 || host.status === "free" ? "" : String(host.pid),
      String(host.incarnation),
      host.leaseAgeMs === null ? "" : `${host.leaseAgeMs} ms`,
    ]),
  );
  hosts.id = "region-hosts";
  for (const [i, host] of report.hosts.entries()) {
    hosts.tBodies[0]!.rows[i]!.cells[1]!.className = `status-${host.status}`;
  }
  const heading = element(
    "p",
    { class: "muted" },
    `${report.regionId.slice(0, 8)}…, ${bytes(report.regionBytes)}, lease ${report.leaseMs} ms`,
  );
  body.className = "";
  body.replaceChildren(heading, regionMap(report), legend, scrolling(stgs), scrolling(hosts));
}

async function pollRegion(): Promise<void> {
  try {
    renderRegion(await api("/v1/region") as RegionReport);
  } catch (error) {
    const body = document.getElementById("region-body")!;
    body.textContent = error instanceof ApiError && error.status === 404
      ? "No storage region is attached to this server."
      : `region: ${(error as Error).message}`;
  }
}

// ---- the jobs ---------------------------------------------------------------------------

interface JobProgress {
  files: number;
  bytes: number;
  totalBytes: number;
  storageBytes: number;
  networkBytes: number;
}

interface Job {
  id: string;
  request: { kind: string; repo?: string; source?: string; target?: string };
  state: string;
  createdMs: number;
  startedMs?: number;
  endedMs?: number;
  progress: JobProgress;
  result?: {
    snapshot?: string;
    dataPath?: string;
    fallbackReason?: string | null;
    fullReason?: string | null;
  };
  error?: string;
}

/** A throughput sample: when, and the bytes each channel had moved by then. */
interface Sample {
  readonly atMs: number;
  readonly storageBytes: number;
  readonly networkBytes: number;
  readonly bytes: number;
}

/** What the page keeps per job: its card, its event stream and its samples. */
interface Watched {
  card: HTMLElement;
  events?: EventSource;
  samples: Sample[];
  progress?: JobProgress;
}

const watched = new Map<string, Watched>();
const ENDED = new Set(["succeeded", "failed", "cancelled"]);

function follow(job: Job, entry: Watched): void {
  if (entry.events !== undefined || ENDED.has(job.state)) return;
  const events = new EventSource(`/v1/jobs/${encodeURIComponent(job.id)}/events`);
  entry.events = events;
  events.addEventListener("progress", (message) => {
    const progress = JSON.parse((message as MessageEvent).data).progress as JobProgress;
    entry.progress = progress;
    updateProgress(entry);
  });
  events.addEventListener("state", (message) => {
    const state = JSON.parse((message as MessageEvent).data).state as string;
    if (ENDED.has(state)) {
      events.close();
      void pollJobs();
    }
  });
  // The stream ends after the last state; the browser would reconnect: stop it instead.
  events.onerror = () => events.close();
}

/** Bytes per second of each channel between consecutive samples. */
function rates(samples: Sample[]): Array<{ storage: number; network: number; total: number }> {
  const found = [];
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1]!, samples[i]!];
    const seconds = Math.max((b.atMs - a.atMs) / 1000, 1e-3);
    found.push({
      storage: (b.storageBytes - a.storageBytes) / seconds,
      network: (b.networkBytes - a.networkBytes) / seconds,
      total: (b.bytes - a.bytes) / seconds,
    });
  }
  return found;
}

function chart(samples: Sample[]): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 120 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const series = rates(samples);
  const top = Math.max(1, ...series.map((r) => Math.max(r.storage, r.network)));
  for (const channel of ["storage", "network"] as const) {
    const line = document.createElementNS(ns, "polyline");
    // The samples so far span the chart's width (120 units), then scroll once it is full.
    const step = 120 / Math.max(series.length - 1, 1);
    const points = series.map((r, i) =>
      `${(i * step).toFixed(1)},${(40 - (r[channel] / top) * 38).toFixed(1)}`
    );
    line.setAttribute("points", points.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", channel === "storage" ? "#2f6fde" : "#d9822b");
    line.setAttribute("stroke-width", "1");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.dataset.channel = channel;
    svg.append(line);
  }
  return svg;
}

function eta(entry: Watched): string {
  const progress = entry.progress;
  const recent = rates(entry.samples.slice(-6));
  const rate = recent.reduce((sum, r) => sum + r.total, 0) / Math.max(recent.length, 1);
  if (progress === undefined || progress.totalBytes === 0 || rate <= 0) return "ETA unknown";
  const seconds = Math.max(0, (progress.totalBytes - progress.bytes) / rate);
  return `ETA ${seconds < 60 ? `${seconds.toFixed(0)} s` : `${(seconds / 60).toFixed(1)} min`}`;
}

/** Takes one sample of every followed job: the chart's time series, on a steady clock. */
function sampleAll(): Promise<void> {
  for (const entry of watched.values()) {
    if (entry.events === undefined || entry.events.readyState === EventSource.CLOSED) continue;
    sample(entry);
  }
  return Promise.resolve();
}

function sample(entry: Watched): void {
  if (entry.progress === undefined) return;
  entry.samples.push({ atMs: performance.now(), ...entry.progress });
  if (entry.samples.length > SAMPLES_MAX) entry.samples.shift();
  entry.card.querySelector("svg")!.replaceWith(chart(entry.samples));
  entry.card.querySelector(".eta")!.textContent = eta(entry);
}

function updateProgress(entry: Watched): void {
  const progress = entry.progress;
  if (progress === undefined) return;
  const card = entry.card;
  const fraction = progress.totalBytes > 0 ? Math.min(1, progress.bytes / progress.totalBytes) : 0;
  card.querySelector<HTMLElement>(".bar > div")!.style.width = `${(fraction * 100).toFixed(1)}%`;
  card.querySelector(".bytes")!.textContent = `${bytes(progress.bytes)} of ` +
    `${progress.totalBytes === 0 ? "?" : bytes(progress.totalBytes)}, ${progress.files} files`;
  card.querySelector(".channels")!.textContent = `storage ${bytes(progress.storageBytes)}, ` +
    `network ${bytes(progress.networkBytes)}`;
  card.dataset.storageBytes = String(progress.storageBytes);
  card.dataset.bytes = String(progress.bytes);
}

function newCard(job: Job): HTMLElement {
  const card = element("div", { class: "job", id: `job-${job.id}` });
  const head = element("div", { class: "row" });
  const cancel = element("button", { type: "button", class: "cancel" }, "Cancel");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api(`/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
    } catch (error) {
      card.querySelector(".outcome")!.textContent = (error as Error).message;
    }
    await pollJobs();
  });
  head.append(
    element("strong", {}, `${job.request.kind} ${job.id.slice(0, 8)}`),
    element("span", { class: "state" }),
    element("span", { class: "muted what" }),
    cancel,
  );
  const bar = element("div", { class: "bar" });
  bar.append(element("div", { style: "width:0%" }));
  const numbers = element("div", { class: "row" });
  numbers.append(
    element("span", { class: "bytes" }),
    element("span", { class: "channels muted" }),
    element("span", { class: "eta muted" }),
  );
  const key = element("div", { class: "row chart-key" });
  key.append(
    element("span", { class: "storage" }, "— storage B/s"),
    element("span", { class: "network" }, "— network B/s"),
  );
  card.append(head, bar, numbers, chart([]), key, element("div", { class: "row outcome" }));
  return card;
}

function updateCard(job: Job, entry: Watched): void {
  const card = entry.card;
  const state = card.querySelector(".state")!;
  state.textContent = job.state;
  card.querySelector<HTMLButtonElement>(".cancel")!.hidden = ENDED.has(job.state);
  state.className = `state state-${job.state}`;
  card.dataset.state = job.state;
  const request = job.request;
  card.querySelector(".what")!.textContent = [request.source, request.repo, request.target]
    .filter((part) => part !== undefined).join(" → ");
  const ended = ENDED.has(job.state);
  if (entry.progress === undefined || (ended && card.dataset.ended === undefined)) {
    entry.progress = job.progress;
    updateProgress(entry);
    if (ended) {
      sample(entry);
      card.dataset.ended = job.state;
      card.querySelector(".eta")!.textContent = "";
    }
  }
  const outcome = card.querySelector(".outcome")!;
  const parts: HTMLElement[] = [];
  if (job.result?.snapshot) {
    parts.push(element("span", { class: "snapshot" }, `snapshot ${job.result.snapshot}`));
  }
  if (job.result?.dataPath) parts.push(element("span", {}, `data path ${job.result.dataPath}`));
  if (job.result?.fallbackReason) {
    parts.push(element("span", { class: "fallback" }, `fallback: ${job.result.fallbackReason}`));
  }
  if (job.error) parts.push(element("span", { class: "error" }, job.error));
  outcome.replaceChildren(...parts);
}

const repositories = new Set<string>();

async function pollJobs(): Promise<void> {
  const body = document.getElementById("jobs-body")!;
  let jobs: Job[];
  try {
    jobs = await api("/v1/jobs") as Job[];
  } catch (error) {
    body.textContent = `jobs: ${(error as Error).message}`;
    return;
  }
  body.className = "";
  if (jobs.length === 0) body.textContent = "No jobs yet.";
  else if (body.textContent === "No jobs yet.") body.textContent = "";
  for (const [position, job] of jobs.slice(0, 20).entries()) {
    let entry = watched.get(job.id);
    if (entry === undefined) {
      entry = { card: newCard(job), samples: [] };
      watched.set(job.id, entry);
    }
    if (body.children[position] !== entry.card) {
      body.insertBefore(entry.card, body.children[position] ?? null);
    }
    const newlyEnded = ENDED.has(job.state) && entry.card.dataset.ended === undefined;
    updateCard(job, entry);
    follow(job, entry);
    // A repository is listed once a job on it succeeded (before, there may be none yet).
    if (job.request.repo !== undefined && job.state === "succeeded") {
      if (newlyEnded || !repositories.has(job.request.repo)) void showSnapshots(job.request.repo);
      repositories.add(job.request.repo);
    }
  }
}

// ---- snapshots --------------------------------------------------------------------------

interface SnapshotSummary {
  id: string;
  kind?: string;
  parent?: string | null;
  createdMs?: number;
  channelBytes?: { storage: number; network: number };
  entries: { files: number; fileBytes: number };
  problem?: string;
}

async function showSnapshots(repo: string): Promise<void> {
  const body = document.getElementById("snapshots-body")!;
  const id = `snapshots-${encodeURIComponent(repo)}`;
  let block = document.getElementById(id);
  if (block === null) {
    block = element("div", { id, class: "repository" });
    body.append(block);
  }
  try {
    const list = await api(`/v1/snapshots?repo=${encodeURIComponent(repo)}`) as SnapshotSummary[];
    const rows = list.map((s) => [
      s.id,
      s.createdMs === undefined ? "" : new Date(s.createdMs).toLocaleString(),
      s.kind ?? "?",
      String(s.entries.files),
      s.channelBytes === undefined ? "" : bytes(s.channelBytes.storage),
      s.channelBytes === undefined ? "" : bytes(s.channelBytes.network),
      s.parent ?? "full",
    ]);
    const made = table(["id", "time", "kind", "files", "storage", "network", "parent"], rows);
    for (const [i, s] of list.entries()) made.tBodies[0]!.rows[i]!.dataset.snapshot = s.id;
    block.replaceChildren(element("h3", {}, repo), scrolling(made));
  } catch (error) {
    block.replaceChildren(
      element("h3", {}, repo),
      element("p", { class: "error" }, (error as Error).message),
    );
  }
}

// ---- forms ------------------------------------------------------------------------------

/** The job request a form describes: its text fields (empty ones left out) and checkboxes. */
function requestOf(form: HTMLFormElement): Record<string, unknown> {
  const request: Record<string, unknown> = { kind: form.dataset.kind };
  for (const input of Array.from(form.querySelectorAll("input"))) {
    if (input.type === "checkbox") request[input.name] = input.checked;
    else if (input.value.trim() !== "") request[input.name] = input.value.trim();
  }
  for (const select of Array.from(form.querySelectorAll("select"))) {
    request[select.name] = select.value;
  }
  return request;
}

function wireForms(): void {
  for (const form of Array.from(document.querySelectorAll<HTMLFormElement>("form[data-kind]"))) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const output = form.querySelector("output")!;
      output.textContent = "";
      try {
        await api("/v1/jobs", { method: "POST", body: JSON.stringify(requestOf(form)) });
        await pollJobs();
      } catch (error) {
        output.textContent = (error as Error).message;
      }
    });
  }
  const snapshots = document.getElementById("snapshots-form") as HTMLFormElement;
  snapshots.addEventListener("submit", (event) => {
    event.preventDefault();
    const repo = (snapshots.elements.namedItem("repo") as HTMLInputElement).value.trim();
    if (repo !== "") void showSnapshots(repo);
  });
  document.getElementById("logout")!.addEventListener("click", async () => {
    await api("/logout", { method: "POST" }).catch(() => {});
    location.href = "/";
  });
}

// ---- start ------------------------------------------------------------------------------

/** Runs `step` every `periodMs`, one call at a time (a slow answer delays the next). */
function every(step: () => Promise<void>, periodMs = POLL_MS): void {
  const run = async () => {
    await step();
    setTimeout(run, periodMs);
  };
  void run();
}

wireForms();
every(pollRegion);
every(pollJobs);
every(sampleAll, SAMPLE_MS);
every(() => {
  document.getElementById("clock")!.textContent = new Date().toLocaleTimeString();
  return Promise.resolve();
});
