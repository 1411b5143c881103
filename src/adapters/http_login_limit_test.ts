import assert from "node:assert/strict";
import { LoginLimiter } from "./http_login_limit.ts";

Deno.test("an address past its attempts is refused with the seconds left in its window", () => {
  const clock = { now: 5_000 };
  const limiter = new LoginLimiter({ nowMs: () => clock.now, attemptsMax: 3, windowMs: 30_000 });
  for (let i = 0; i < 3; i++) assert.ok(limiter.attempt("198.51.100.1").allowed);
  clock.now += 10_500;
  assert.deepEqual(limiter.attempt("198.51.100.1"), { allowed: false, retryAfterSeconds: 20 });
  assert.ok(limiter.attempt("198.51.100.2").allowed, "another address has its own window");
  clock.now = 5_000 + 30_000;
  assert.ok(limiter.attempt("198.51.100.1").allowed, "a new window starts afresh");
});

Deno.test("refused attempts do not lengthen the window", () => {
  const clock = { now: 0 };
  const limiter = new LoginLimiter({ nowMs: () => clock.now, attemptsMax: 1, windowMs: 1_000 });
  assert.ok(limiter.attempt("a").allowed);
  for (let i = 0; i < 100; i++) assert.equal(limiter.attempt("a").allowed, false);
  clock.now = 999;
  assert.deepEqual(limiter.attempt("a"), { allowed: false, retryAfterSeconds: 1 });
  clock.now = 1_000;
  assert.ok(limiter.attempt("a").allowed);
});

Deno.test("the table of addresses never holds more than its bound, dropping the oldest window", () => {
  const clock = { now: 0 };
  const limiter = new LoginLimiter({
    nowMs: () => clock.now,
    attemptsMax: 1,
    windowMs: 60_000,
    addressesMax: 4,
  });
  for (let i = 0; i < 1_000; i++) {
    clock.now = i;
    limiter.attempt(`10.0.${i >> 8}.${i & 255}`);
    assert.ok(limiter.size <= 4, `size ${limiter.size} after ${i + 1} addresses`);
  }
  assert.equal(limiter.attempt("10.0.3.231").allowed, false, "the newest is still tracked");
  assert.equal(limiter.attempt("10.0.0.0").allowed, true, "the oldest was dropped");
});

Deno.test("bounds that are not positive integers are refused", () => {
  assert.throws(() => new LoginLimiter({ nowMs: () => 0, attemptsMax: 0 }), RangeError);
  assert.throws(() => new LoginLimiter({ nowMs: () => 0, windowMs: 0.5 }), RangeError);
  assert.throws(() => new LoginLimiter({ nowMs: () => 0, addressesMax: -1 }), RangeError);
});
