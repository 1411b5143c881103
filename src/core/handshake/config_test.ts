import assert from "node:assert/strict";
import { parseHandshakeConfig, parseServerConfig } from "./config.ts";

Deno.test("parseHandshakeConfig fills in the defaults", () => {
  const result = parseHandshakeConfig({ wellKnownPort: 7000 });
  assert.ok(result.ok);
  assert.deepEqual(result.value, {
    wellKnownPort: 7000,
    localHost: "127.0.0.1",
    peerHost: "127.0.0.1",
    connectorBindPort: 0,
    expectedConnections: 2,
    handshakeTimeoutMs: 5000,
    backlog: 4,
  });
});

Deno.test("parseHandshakeConfig names every bad field in one message", () => {
  const result = parseHandshakeConfig({
    wellKnownPort: 65535,
    handshakeTimeoutMs: 0,
    backlog: 1000,
    expectedConnections: 3,
  });
  assert.ok(!result.ok);
  assert.equal(result.code, "EINVAL");
  assert.match(result.message, /wellKnownPort: .*WKP\+1/);
  assert.match(result.message, /handshakeTimeoutMs: .*at least 1 ms/);
  assert.match(result.message, /backlog: .*at most 128/);
  assert.match(result.message, /expectedConnections: .*must be 2/);
});

Deno.test("parseServerConfig requires the STG and checks its fields", () => {
  const missing = parseServerConfig({ wellKnownPort: 7000 });
  assert.ok(!missing.ok && /stg/.test(missing.message));
  const bad = parseServerConfig({ wellKnownPort: 7000, stg: { id: 70000, lengthBytes: 0 } });
  assert.ok(!bad.ok);
  assert.match(bad.message, /stg\.id: .*<= 65535/);
  assert.match(bad.message, /stg\.lengthBytes: .*at least 1 byte/);
});

Deno.test("parseHandshakeConfig refuses a value that is not an object", () => {
  const result = parseHandshakeConfig("wkp=7000");
  assert.ok(!result.ok && result.message.startsWith("bad handshake configuration: config:"));
});
