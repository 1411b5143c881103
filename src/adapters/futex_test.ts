import assert from "node:assert/strict";
import { AdaptiveSpin, PROBE_EVERY } from "./futex.ts";

Deno.test("a spin that keeps missing shrinks to none, a periodic probe spins in full, a hit restores it", () => {
  const spin = new AdaptiveSpin(0.05);
  const budgets: number[] = [];
  for (let wait = 1; wait < PROBE_EVERY; wait++) {
    budgets.push(spin.budgetMs);
    spin.slept();
  }
  assert.equal(budgets[0], 0.05);
  assert.ok(budgets.slice(0, 16).every((b, i) => i === 0 || b < budgets[i - 1]!), `${budgets}`);
  assert.equal(budgets.at(-1), 0, "a core shared for good ends the spinning");
  assert.equal(spin.budgetMs, 0.05, `wait ${PROBE_EVERY} probes with the full spin`);
  spin.slept();
  spin.caught();
  assert.equal(spin.budgetMs, 0.05, "a hit restores the full spin");
});
