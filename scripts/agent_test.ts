import assert from "node:assert/strict";
import { freePortPair } from "../src/app/hosts/ports.ts";

const AGENT = new URL("./agent.ts", import.meta.url).pathname;
const FLAGS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"];

/** The agent with only these variables set (no LANFREE_AGENT_KEY unless given). */
function agent(args: string[], env: Record<string, string> = {}) {
  const kept = Object.fromEntries(
    ["HOME", "PATH", "DENO_DIR", "TMPDIR"].flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...FLAGS, AGENT, ...args],
    env: { ...kept, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("an agent without a key refuses to start, saying how to give one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-agent-" });
  try {
    const out = await agent(["--listen", `127.0.0.1:${freePortPair()}`, "--root", dir]).output();
    assert.equal(out.code, 2);
    assert.match(decode(out.stderr), /no agent key: set LANFREE_AGENT_KEY or --key-file FILE/);
    const short = await agent(["--listen", `127.0.0.1:${freePortPair()}`, "--root", dir], {
      LANFREE_AGENT_KEY: "short",
    }).output();
    assert.equal(short.code, 1);
    assert.match(decode(short.stderr), /needs at least 16/);
    const badRoot = await agent(["--listen", "127.0.0.1:7000", "--root", `${dir}/missing`], {
      LANFREE_AGENT_KEY: "a key long enough 0123",
    }).output();
    assert.equal(badRoot.code, 2);
    assert.match(decode(badRoot.stderr), /--root .*missing is not a directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--insecure-no-key starts the agent with a loud warning; SIGTERM stops it cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-agent-" });
  const port = freePortPair();
  const child = agent(["--listen", `127.0.0.1:${port}`, "--root", dir, "--insecure-no-key"])
    .spawn();
  try {
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    // Bounded by the agent: it prints the warning and then that it listens.
    while (!seen.includes("listening on")) {
      const chunk = await lines.read();
      if (chunk.done) break;
      seen += chunk.value;
    }
    assert.match(seen, /WARNING: lanfree agent started with --insecure-no-key/);
    assert.match(seen, new RegExp(`listening on 127\\.0\\.0\\.1:${port}`));
    child.kill("SIGTERM");
    for (let chunk = await lines.read(); !chunk.done; chunk = await lines.read()) {
      seen += chunk.value;
    }
    assert.match(seen, /stopped; region blocks and host slot released/);
    assert.equal((await child.status).code, 0);
    await child.stdout.cancel();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
