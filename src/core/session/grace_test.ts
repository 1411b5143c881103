import assert from "node:assert/strict";
import { GRACE_ROWS, graceRuleViolations } from "./grace.ts";

Deno.test("the grace rows hold their stated rules", () => {
  assert.deepEqual(graceRuleViolations(), []);
});

Deno.test("a server that stops listening before the client's report may arrive breaks a rule", () => {
  const rows = { ...GRACE_ROWS, clientReportWait: { ...GRACE_ROWS.clientReportWait, waitMs: 500 } };
  assert.match(graceRuleViolations(rows).join("\n"), /tellWait .* must not exceed/);
});

Deno.test("a job grace no longer than the server's own wait breaks a rule", () => {
  const rows = { ...GRACE_ROWS, errorGrace: { ...GRACE_ROWS.errorGrace, waitMs: 1_000 } };
  assert.match(graceRuleViolations(rows).join("\n"), /must be below errorGrace/);
});
