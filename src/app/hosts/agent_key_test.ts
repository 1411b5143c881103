import assert from "node:assert/strict";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { Session } from "./session.ts";
import {
  AGENT_KEY_BYTES_MIN,
  type AgentKey,
  AgentKeyError,
  importAgentKey,
  loadAgentKey,
  proveToAgent,
  proveToServer,
} from "./agent_key.ts";
import { withTempDir } from "../_testing.ts";

/** Two sessions joined by real TCP connections on 127.0.0.1 (control and error). */
async function sessionPair() {
  const sockets = createTcpSockets({ ioTimeoutMs: 5000 });
  const connect = async () => {
    const listener = await sockets.socket("network");
    await sockets.bind(listener, { kind: "network", host: "127.0.0.1", port: 0 });
    await sockets.listen(listener, 1);
    const near = await sockets.socket("network");
    const [far] = await Promise.all([
      sockets.accept(listener),
      sockets.connect(near, await sockets.getsockname(listener)),
    ]);
    await sockets.close(listener);
    return [near, far] as const;
  };
  const [controlA, controlB] = await connect();
  const [errorA, errorB] = await connect();
  const server = new Session(sockets, { control: controlA, error: errorA, data: controlA });
  const agent = new Session(sockets, { control: controlB, error: errorB, data: controlB });
  return {
    server,
    agent,
    async close() {
      for (const fd of [controlA, controlB, errorA, errorB]) await sockets.close(fd);
      await server.settled();
      await agent.settled();
    },
  };
}

const key = (text: string) => importAgentKey(new TextEncoder().encode(text));

async function prove(
  serverKey: AgentKey | null,
  agentKey: AgentKey | null,
  purposes = ["job", "job"],
) {
  const pair = await sessionPair();
  try {
    return await Promise.allSettled([
      proveToAgent(pair.server, serverKey, purposes[0]!),
      proveToServer(pair.agent, agentKey, purposes[1]!),
    ]);
  } finally {
    await pair.close();
  }
}

function reasons(results: PromiseSettledResult<void>[]): string[] {
  return results.map((r) => r.status === "rejected" ? (r.reason as Error).message : "ok");
}

Deno.test("server and agent with the same key prove it to each other", async () => {
  const results = await prove(await key("a shared secret key"), await key("a shared secret key"));
  assert.deepEqual(reasons(results), ["ok", "ok"]);
});

Deno.test("a wrong agent key is refused by both sides, each with the reason", async () => {
  const results = await prove(await key("the server's own key"), await key("another key, wrong"));
  for (const result of results) {
    assert.equal(result.status, "rejected");
    assert.ok((result as PromiseRejectedResult).reason instanceof AgentKeyError);
  }
  assert.match(reasons(results)[0]!, /agent's proof does not match our key/);
  assert.match(reasons(results)[1]!, /agent key refused: the agent's proof does not match/);
});

Deno.test("a proof made for one purpose does not pass for another", async () => {
  const shared = await key("a shared secret key");
  const results = await prove(shared, shared, ["data", "job"]);
  assert.match(reasons(results)[0]!, /does not match/);
});

Deno.test("an agent without a key passes only with a server without one", async () => {
  assert.deepEqual(reasons(await prove(null, null)), ["ok", "ok"]);
  const keyless = reasons(await prove(await key("a shared secret key"), null));
  assert.match(keyless[0]!, /agent has no key/);
  const serverless = reasons(await prove(null, await key("a shared secret key")));
  assert.match(serverless[1]!, /the server has no agent key/);
});

Deno.test("keys come from the key file before the environment, and short keys are refused", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/key`, "file key of enough length\n");
    const fromFile = await loadAgentKey({
      envValue: "env key of enough length",
      keyFile: `${dir}/key`,
    });
    const expected = await key("file key of enough length");
    assert.deepEqual(await fromFile!.mac("x"), await expected.mac("x"));
    assert.equal(await loadAgentKey({}), null);
    await assert.rejects(
      () => loadAgentKey({ envValue: "short" }),
      new RegExp(`at least ${AGENT_KEY_BYTES_MIN}`),
    );
    await assert.rejects(
      () => loadAgentKey({ keyFile: `${dir}/missing` }),
      /cannot read the key file/,
    );
  });
});
