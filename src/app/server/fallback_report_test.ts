import assert from "node:assert/strict";
import type { FailureReason } from "../../core/handshake/types.ts";
import { describeFallback, rankFailures } from "./server_side.ts";

const agentTimeout: FailureReason = {
  origin: "local",
  code: "ETIMEDOUT",
  step: "146",
  message: "handshake deadline passed",
};
const serverRefusal: FailureReason = {
  origin: "local",
  code: "ENOTSUP",
  step: "20",
  message: "STG refused",
};

const failed = (reason: FailureReason) => ({ status: "failed" as const, reason, setupMs: 1 });

Deno.test("the fallback report keeps both sides' failures, the better ranked first", () => {
  const ranked = rankFailures(agentTimeout, failed(serverRefusal));
  // the server's own refusal says more than the agent's timeout waiting for it
  assert.deepEqual(ranked.map((f) => f.side), ["server", "agent"]);
  const text = describeFallback(ranked);
  assert.match(text, /server: ENOTSUP at step 20 .*STG refused/);
  assert.match(text, /agent: ETIMEDOUT at step 146 .*handshake deadline passed/);
  assert.ok(text.indexOf("server:") < text.indexOf("agent:"));
});

Deno.test("the fallback report ranks the agent's failure first when both rank the same", () => {
  const ranked = rankFailures(agentTimeout, failed(agentTimeout));
  assert.deepEqual(ranked.map((f) => f.side), ["agent", "server"]);
});

Deno.test("the fallback report names one side when only one failed", () => {
  assert.deepEqual(rankFailures(null, failed(serverRefusal)), [
    { side: "server", reason: serverRefusal },
  ]);
  assert.deepEqual(rankFailures(agentTimeout, undefined), [{
    side: "agent",
    reason: agentTimeout,
  }]);
  assert.deepEqual(rankFailures(null, undefined), []);
});
