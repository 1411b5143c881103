/**
 * Two hosts for the two-host tests: two network namespaces made here (`ip netns` and a veth
 * pair, addresses assigned here, names with a random part, always removed), the agent in one
 * and the server in the other, both mapping region files under /dev/shm (namespaces share the
 * file system). Where namespaces cannot be made (not root, no `ip`), both run on this host, the
 * agent on 127.0.0.1 and the server's endpoint on 127.0.0.2, and `kind` says so
 * (`LANFREE_TWO_HOSTS=loopback` asks for that on purpose).
 *
 * Processes: the agent (`scripts/agent.ts --json`, a process host whose events the tests read),
 * the server (`scripts/serve.ts`), and a client host inside the server's namespace
 * (`_two_hosts_client.ts`) that submits and watches jobs on the server's endpoint.
 *
 * @module
 */

import { type HostMessage, type ProcessHost, startProcessHost } from "../src/adapters/host_link.ts";
import type { AgentEvent } from "../src/app/agent/agent.ts";
import type { ClientInput, ClientReport } from "./_two_hosts_client.ts";
import { freePortPair } from "../src/app/hosts/ports.ts";
import { STALE_AGE_MS } from "./_leftovers.ts";

/** The permissions of `deno task agent` and `deno task serve`. */
export const HOST_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

/** The two hosts. */
export interface TwoHosts {
  /** `netns`: two network namespaces; `loopback`: this host, two loopback addresses. */
  readonly kind: "netns" | "loopback";
  /** The agent's address, and the address the server's endpoint listens on. */
  readonly agentAddress: string;
  readonly serverAddress: string;
  /** The command a process of that host is started under. */
  wrapper(host: "agent" | "server"): string[];
  /** A port free on that host (fixed in a fresh namespace). */
  port(host: "agent" | "server", index: number): number;
  /** Removes the namespaces. */
  close(): Promise<void>;
}

async function run(command: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output()
    .catch((error) => ({ success: false, stdout: new Uint8Array(), stderr: String(error) }));
  const text = typeof out.stderr === "string" ? out.stderr : new TextDecoder().decode(out.stderr);
  return { ok: out.success, text };
}

/** Names of the namespaces made here: `lf`, six hex digits, `a` (agent) or `s` (server). */
const NAMESPACE_NAME = /^lf[0-9a-f]{6}[as]$/;
const NAMESPACES_CHECKED_MAX = 1_000;

/**
 * Deletes namespaces a killed two-host run left: named as ours, older than `STALE_AGE_MS` (a
 * run that is just starting has none so old) and with no process inside.
 *
 * @param nowMs the present
 * @param only which of them to consider (a test passes its own names)
 * @returns the namespaces deleted
 */
export async function sweepStaleNamespaces(
  nowMs = Date.now(),
  only: (name: string) => boolean = () => true,
): Promise<string[]> {
  const deleted: string[] = [];
  let checked = 0;
  for (const entry of await Array.fromAsync(Deno.readDir("/run/netns")).catch(() => [])) {
    if (!NAMESPACE_NAME.test(entry.name) || !only(entry.name)) continue;
    if (++checked > NAMESPACES_CHECKED_MAX) break;
    const bornMs = (await Deno.lstat(`/run/netns/${entry.name}`).catch(() => null))?.mtime;
    if (!bornMs || nowMs - bornMs.getTime() < STALE_AGE_MS) continue;
    const pids = await new Deno.Command("ip", { args: ["netns", "pids", entry.name] }).output();
    if (!pids.success || pids.stdout.length > 0) continue;
    if ((await run("ip", ["netns", "del", entry.name])).ok) deleted.push(entry.name);
  }
  return deleted;
}

/** Makes two namespaces joined by a veth pair; undefined (and why) where that is impossible. */
async function namespaces(): Promise<TwoHosts | string> {
  if (Deno.env.get("LANFREE_TWO_HOSTS") === "loopback") return "LANFREE_TWO_HOSTS=loopback";
  if (Deno.uid() !== 0) return "not running as root";
  await sweepStaleNamespaces();
  const tag = [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const [agent, server] = [`lf${tag}a`, `lf${tag}s`];
  const net = `10.${crypto.getRandomValues(new Uint8Array(1))[0]! % 250 + 1}.${
    crypto.getRandomValues(new Uint8Array(1))[0]! % 250 + 1
  }`;
  const steps: string[][] = [
    ["netns", "add", agent],
    ["netns", "add", server],
    ["link", "add", `v${agent}`, "type", "veth", "peer", "name", `v${server}`],
    ["link", "set", `v${agent}`, "netns", agent],
    ["link", "set", `v${server}`, "netns", server],
    ["-n", agent, "addr", "add", `${net}.1/24`, "dev", `v${agent}`],
    ["-n", server, "addr", "add", `${net}.2/24`, "dev", `v${server}`],
    ["-n", agent, "link", "set", `v${agent}`, "up"],
    ["-n", server, "link", "set", `v${server}`, "up"],
    ["-n", agent, "link", "set", "lo", "up"],
    ["-n", server, "link", "set", "lo", "up"],
  ];
  const close = async () => {
    await run("ip", ["netns", "del", agent]); // the veth pair goes with it
    await run("ip", ["netns", "del", server]);
    await run("ip", ["link", "del", `v${agent}`]); // in case it was never moved
  };
  for (const step of steps) {
    const done = await run("ip", step);
    if (!done.ok) {
      await close();
      return `ip ${step.join(" ")} failed: ${done.text.trim()}`;
    }
  }
  return {
    kind: "netns",
    agentAddress: `${net}.1`,
    serverAddress: `${net}.2`,
    wrapper: (host) => ["ip", "netns", "exec", host === "agent" ? agent : server],
    port: (_host, index) => 7000 + 2 * index, // a fresh namespace: every port is free
    close,
  };
}

/**
 * Two hosts: namespaces where possible, else loopback (saying so on stderr).
 *
 * @returns the hosts; `close` them
 */
export async function twoHosts(): Promise<TwoHosts> {
  const made = await namespaces();
  if (typeof made !== "string") return made;
  console.error(`two-host tests: no network namespaces (${made}); running on 127.0.0.1/127.0.0.2`);
  return loopbackHosts();
}

/** Below Linux's ephemeral port range (32768 and up by default). */
const WELL_KNOWN_PORT_MIN = 20_000;
const WELL_KNOWN_PORT_MAX = 32_000;

/**
 * A free pair of adjacent ports below the ephemeral range, as a real agent's well-known port
 * is: an agent's port inside that range may be taken, between two of its listeners, as the
 * source port of any outgoing connection (its next bind then fails with EADDRINUSE). Falls back
 * to any free pair.
 */
function wellKnownPortPair(host: string): number {
  for (let attempt = 0; attempt < 100; attempt++) {
    const span = WELL_KNOWN_PORT_MAX - WELL_KNOWN_PORT_MIN;
    const port = WELL_KNOWN_PORT_MIN + Math.floor(Math.random() * span);
    try {
      Deno.listen({ hostname: host, port }).close();
      Deno.listen({ hostname: host, port: port + 1 }).close();
      return port;
    } catch {
      // taken: another
    }
  }
  return freePortPair(host);
}

/**
 * Two "hosts" on this machine: the agent on 127.0.0.1, the server's endpoint on 127.0.0.2 (or
 * the address given: the benchmark, allowed 127.0.0.1 only, runs both there).
 *
 * @param serverAddress where the server's endpoint listens
 * @returns the hosts
 */
export function loopbackHosts(serverAddress = "127.0.0.2"): TwoHosts {
  const ports = new Map<string, number>();
  return {
    kind: "loopback",
    agentAddress: "127.0.0.1",
    serverAddress,
    wrapper: () => [],
    port: (host, index) => {
      const key = `${host}:${index}`;
      if (!ports.has(key)) {
        ports.set(key, wellKnownPortPair(host === "agent" ? "127.0.0.1" : serverAddress));
      }
      return ports.get(key)!;
    },
    close: () => Promise.resolve(),
  };
}

/** A started agent: its process host (events) and its address. */
export interface AgentProcess {
  readonly host: ProcessHost<HostMessage, AgentEvent>;
  readonly address: string;
  /** Every event so far, in order. */
  readonly events: AgentEvent[];
  /** Waits for the first event at or after index `from` (default 0) that matches. */
  waitFor(
    match: (event: AgentEvent) => boolean,
    options?: { readonly timeoutMs?: number; readonly from?: number },
  ): Promise<AgentEvent>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<string>;
}

/** What an agent is started with. */
export interface AgentSpec {
  readonly index: number;
  readonly roots: readonly string[];
  readonly region?: string;
  /** The key, or null for `--insecure-no-key`. */
  readonly key: string | null;
}

/**
 * Starts an agent on the agent host and waits until it listens.
 *
 * @param hosts the hosts
 * @param spec its port index, roots, region and key
 * @returns the agent
 */
export async function startAgent(hosts: TwoHosts, spec: AgentSpec): Promise<AgentProcess> {
  const address = `${hosts.agentAddress}:${hosts.port("agent", spec.index)}`;
  const args = ["--listen", address, "--json", ...spec.roots.flatMap((root) => ["--root", root])];
  if (spec.region !== undefined) args.push("--region", spec.region);
  if (spec.key === null) args.push("--insecure-no-key");
  const host = startProcessHost<HostMessage, AgentEvent>({
    script: new URL("./agent.ts", import.meta.url),
    flags: HOST_FLAGS,
    args,
    wrapper: hosts.wrapper("agent"),
    env: spec.key === null ? {} : { LANFREE_AGENT_KEY: spec.key },
    stderr: Deno.env.get("LANFREE_TEST_VERBOSE") ? "inherit" : "null",
  }, `agent ${address}`);
  const events: AgentEvent[] = [];
  const waiters = new Set<() => void>();
  for (const type of eventTypes) {
    host.on(type, (event) => {
      events.push(event);
      for (const wake of waiters) wake();
    });
  }
  const agent: AgentProcess = {
    host,
    address,
    events,
    waitFor: (match, { timeoutMs = 120_000, from = 0 } = {}) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = events.slice(from).find(match);
          if (found === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`${address}: no such event in ${timeoutMs} ms: ${JSON.stringify(events)}`),
          );
        }, timeoutMs);
        waiters.add(check);
        host.ended.then(() => setTimeout(check, 0));
        check();
      }),
    stop: async () => {
      host.kill("SIGTERM");
      return await host.ended;
    },
  };
  await agent.waitFor((event) => event.type === "listening", { timeoutMs: 60_000 });
  return agent;
}

const eventTypes: AgentEvent["type"][] = [
  "listening",
  "job-started",
  "job-progress",
  "job-done",
  "job-failed",
  "job-refused",
  "listen-failed",
  "stopping",
  "stopped",
];

/** A started server and the client host that talks to it from the server's host. */
export interface ServerProcess {
  readonly child: Deno.ChildProcess;
  readonly url: string;
  readonly client: ProcessHost<ClientInput, ClientReport>;
  /** Submits a job; its record, or why the server refused it. */
  submit(request: Record<string, unknown>): Promise<Record<string, unknown> & { id: string }>;
  /** Waits until a job ended; its record. */
  wait(id: string): Promise<Record<string, unknown> & { id: string; state: string }>;
  /** A job's record now. */
  get(id: string): Promise<Record<string, unknown> & { id: string; state: string }>;
  /** Stops the server and its client. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** The token the tests' servers take. */
export const TEST_TOKEN = "two-hosts-test-token";

/**
 * Starts `serve` on the server host, and a client host beside it, and waits until it answers.
 *
 * @param hosts the hosts
 * @param options its root, region file and agent key
 * @returns the server
 */
export async function startServer(
  hosts: TwoHosts,
  options: { readonly root: string; readonly region: string; readonly key: string },
): Promise<ServerProcess> {
  const port = hosts.port("server", 40);
  const url = `http://${hosts.serverAddress}:${port}`;
  const wrapper = hosts.wrapper("server");
  const denoArgs = [
    "run",
    ...HOST_FLAGS,
    new URL("./serve.ts", import.meta.url).pathname,
    "--host",
    hosts.serverAddress,
    "--port",
    String(port),
    "--root",
    options.root,
    "--region",
    options.region,
  ];
  const child = new Deno.Command(wrapper[0] ?? Deno.execPath(), {
    args: wrapper.length > 0 ? [...wrapper.slice(1), Deno.execPath(), ...denoArgs] : denoArgs,
    env: { LANFREE_TOKEN: TEST_TOKEN, LANFREE_AGENT_KEY: options.key },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const client = startProcessHost<ClientInput, ClientReport>({
    script: new URL("./_two_hosts_client.ts", import.meta.url),
    flags: ["--allow-net"],
    args: [url, TEST_TOKEN],
    wrapper,
    stderr: "null",
  }, "server client");
  client.post({ type: "health" });
  await client.next("ok", 120_000);
  const ask = async (message: ClientInput) => {
    client.post(message);
    const answer = await client.next(["job", "refused"], 600_000);
    if (answer.type === "refused") {
      throw new Error(`the server refused (${answer.status}): ${answer.detail}`);
    }
    return answer.job;
  };
  return {
    child,
    url,
    client,
    submit: (request) => ask({ type: "submit", request }),
    wait: (id) => ask({ type: "wait", id }),
    get: (id) => ask({ type: "get", id }),
    stop: async (signal = "SIGTERM") => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      await child.status;
      client.terminate();
      await client.ended;
    },
  };
}

/**
 * Runs a command line of a script on a host and collects its output.
 *
 * @param hosts the hosts
 * @param host where it runs
 * @param script the script
 * @param args its arguments
 * @param env its environment additions
 * @returns exit code, stdout and stderr
 */
export async function runOn(
  hosts: TwoHosts,
  host: "agent" | "server",
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const wrapper = hosts.wrapper(host);
  const denoArgs = ["run", ...HOST_FLAGS, new URL(script, import.meta.url).pathname, ...args];
  const out = await new Deno.Command(wrapper[0] ?? Deno.execPath(), {
    args: wrapper.length > 0 ? [...wrapper.slice(1), Deno.execPath(), ...denoArgs] : denoArgs,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}
