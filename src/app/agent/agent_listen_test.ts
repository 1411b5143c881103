import assert from "node:assert/strict";
import { listenFailureIsFatal } from "./agent.ts";

const taken = "EADDRINUSE at step 114 (local): bind failed: EADDRINUSE: bind on descriptor 93: " +
  "Address already in use (os error 98)";

Deno.test("an agent whose first listener cannot bind its address stops", () => {
  assert.equal(listenFailureIsFatal(taken, false), true);
  assert.equal(listenFailureIsFatal(taken.replace("step 114", "step 115"), false), true);
});

Deno.test("an agent that listened before survives a bind that fails between two listeners (its port taken meanwhile as an ephemeral source port) and listens again", () => {
  assert.equal(listenFailureIsFatal(taken, true), false);
});

Deno.test("a failed handshake after the bind never stops the agent", () => {
  const crossed = "EPROTO at step 126 (remote): unexpected wellKnown message at step 126";
  assert.equal(listenFailureIsFatal(crossed, false), false);
  assert.equal(listenFailureIsFatal(crossed, true), false);
});
