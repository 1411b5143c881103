import assert from "node:assert/strict";

const SCRIPT = new URL("./serve.ts", import.meta.url).pathname;

/** Reads lines from a stream until `count` lines arrived (bounded by the stream's end). */
async function readLines(stream: ReadableStream<Uint8Array>, count: number): Promise<string[]> {
  const lines: string[] = [];
  let buffered = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  while (lines.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    lines.push(...parts);
  }
  reader.releaseLock();
  return lines;
}

Deno.test("deno task serve listens on 127.0.0.1, prints a generated token once, and enforces it", async () => {
  const root = await Deno.makeTempDir({ prefix: "lanfree-serve-" });
  const env = { ...Deno.env.toObject() };
  delete env.LANFREE_TOKEN;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-net",
      "--allow-env",
      "--allow-sys",
      SCRIPT,
      "--port",
      "0",
      "--root",
      root,
    ],
    stdout: "piped",
    stderr: "null",
    env,
    clearEnv: true,
  }).spawn();
  try {
    const [listening, tokenLine] = await readLines(child.stdout, 2);
    const url = /http:\/\/127\.0\.0\.1:(\d+)/.exec(listening ?? "");
    assert.ok(url !== null, `no listening line: ${listening}`);
    const token = /^token: (\w{32,})$/.exec(tokenLine ?? "")?.[1];
    assert.ok(token !== undefined, `no token line: ${tokenLine}`);
    const base = `http://127.0.0.1:${url[1]}`;
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: "ok" });
    const denied = await fetch(`${base}/v1/storage`);
    assert.equal(denied.status, 401);
    await denied.body?.cancel();
    const storage =
      await (await fetch(`${base}/v1/storage`, { headers: { authorization: `Bearer ${token}` } }))
        .json();
    assert.equal(storage.controlBlocks.inUse, 0);
    const outside = await fetch(`${base}/v1/snapshots?repo=/etc`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(outside.status, 403);
    await outside.body?.cancel();
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deno task serve refuses to start with an empty or blank LANFREE_TOKEN, saying why", async () => {
  const root = await Deno.makeTempDir({ prefix: "lanfree-serve-" });
  try {
    for (const token of ["", "   "]) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-sys"]
          .concat([SCRIPT, "--port", "0", "--root", root]),
        stdout: "piped",
        stderr: "piped",
        env: { LANFREE_TOKEN: token },
      }).spawn();
      // A server that starts anyway never exits: stop it after a generous bound and fail.
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const output = await child.output();
      clearTimeout(timer);
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 1, `LANFREE_TOKEN=${JSON.stringify(token)} must refuse to start`);
      assert.match(stderr, /LANFREE_TOKEN is set but empty/);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
