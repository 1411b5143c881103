import assert from "node:assert/strict";

const SCRIPT = new URL("./backup.ts", import.meta.url).pathname;

async function runBackup(...args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-net=127.0.0.1", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test("backup sends the sample tree over 127.0.0.1 and every hash matches", async () => {
  const { code, stdout } = await runBackup("--json");
  assert.equal(code, 0);
  const summary = JSON.parse(stdout);
  assert.equal(summary.verified, true);
  assert.equal(summary.dataChannel, "network");
  assert.match(summary.storageFallbackReason, /ENOTSUP/);
  assert.equal(summary.repositoryWritten, false);
  const blob = summary.received.find((file: { path: string }) => file.path === "data/blob.bin");
  assert.equal(blob.bytes, 300_000);
  const expected = await crypto.subtle.digest(
    "SHA-256",
    await Deno.readFile(new URL("../fixtures/sample/data/blob.bin", import.meta.url)),
  );
  assert.equal(
    blob.sha256,
    [...new Uint8Array(expected)].map((b) => b.toString(16).padStart(2, "0")).join(""),
  );
});

Deno.test("backup of a missing source fails with one line naming it", async () => {
  const { code, stderr } = await runBackup("--source", "/nonexistent/lanfree-source");
  assert.equal(code, 1);
  assert.match(stderr, /\/nonexistent\/lanfree-source/);
  assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
});

Deno.test("backup with an unknown flag fails and names the flag", async () => {
  const { code, stderr } = await runBackup("--bogus");
  assert.equal(code, 1);
  assert.match(stderr, /--bogus/);
});
