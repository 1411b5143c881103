import assert from "node:assert/strict";
import { constantTimeEqual, SessionStore } from "./http_session.ts";

/** A store on a hand-moved clock with a counting random source (distinct bytes each call). */
function store(options: { idleMs?: number; lifetimeMs?: number; sessionsMax?: number } = {}) {
  const clock = { now: 1_000 };
  let counter = 0;
  const sessions = new SessionStore({
    nowMs: () => clock.now,
    randomBytes: (bytes) => {
      counter++;
      bytes.fill(0);
      new DataView(bytes.buffer).setUint32(0, counter);
      return bytes;
    },
    ...options,
  });
  return { clock, sessions };
}

Deno.test("a session is found by its id and ends at logout; an unknown id finds nothing", () => {
  const { sessions } = store();
  const session = sessions.create();
  assert.match(session.id, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(session.id, session.csrfToken);
  assert.equal(sessions.lookup(session.id), session);
  assert.equal(sessions.lookup(`${session.id}x`), undefined);
  sessions.delete(session.id);
  assert.equal(sessions.lookup(session.id), undefined);
});

Deno.test("a session unused for the idle time ends; using it keeps it alive until its lifetime", () => {
  const { clock, sessions } = store({ idleMs: 100, lifetimeMs: 250 });
  const idle = sessions.create();
  const used = sessions.create();
  clock.now += 99;
  assert.ok(sessions.lookup(used.id));
  clock.now += 1; // idle's 100 ms are up; used was renewed 1 ms ago
  assert.equal(sessions.lookup(idle.id), undefined);
  assert.ok(sessions.lookup(used.id));
  assert.equal(sessions.expiresMs(used), 1_000 + 200);
  clock.now += 99;
  assert.ok(sessions.lookup(used.id));
  assert.equal(sessions.expiresMs(used), 1_000 + 250, "the lifetime caps the idle renewal");
  clock.now = 1_000 + 250;
  assert.equal(
    sessions.lookup(used.id),
    undefined,
    "used all along, it still ends at its lifetime",
  );
});

Deno.test("the store keeps at most sessionsMax sessions, dropping the least recently used", () => {
  const { clock, sessions } = store({ sessionsMax: 2 });
  const first = sessions.create();
  const second = sessions.create();
  clock.now += 1;
  assert.ok(sessions.lookup(first.id)); // second is now the least recently used
  const third = sessions.create();
  assert.equal(sessions.size, 2);
  assert.ok(sessions.lookup(first.id));
  assert.equal(sessions.lookup(second.id), undefined);
  assert.ok(sessions.lookup(third.id));
});

Deno.test("expired sessions are dropped when a new one is made", () => {
  const { clock, sessions } = store({ idleMs: 10, sessionsMax: 3 });
  sessions.create();
  sessions.create();
  clock.now += 10;
  sessions.create();
  assert.equal(sessions.size, 1);
});

Deno.test("the CSRF check takes the session's own token only", () => {
  const { sessions } = store();
  const one = sessions.create();
  const other = sessions.create();
  assert.ok(sessions.csrfMatches(one, one.csrfToken));
  assert.ok(!sessions.csrfMatches(one, other.csrfToken));
  assert.ok(!sessions.csrfMatches(one, undefined));
  assert.ok(!sessions.csrfMatches(one, ""));
  assert.ok(!sessions.csrfMatches(one, one.csrfToken.slice(1)));
});

Deno.test("a random source that repeats itself makes no session", () => {
  const sessions = new SessionStore({ nowMs: () => 0, randomBytes: (bytes) => bytes.fill(7) });
  assert.throws(() => sessions.create(), /random source repeated/);
});

Deno.test("constantTimeEqual compares whole strings of any lengths", () => {
  assert.ok(constantTimeEqual("abc", "abc"));
  assert.ok(!constantTimeEqual("abc", "abd"));
  assert.ok(!constantTimeEqual("abc", "abcd"));
  assert.ok(!constantTimeEqual("", "a"));
  assert.ok(constantTimeEqual("", ""));
});

Deno.test("limits that cannot work are refused", () => {
  const base = { nowMs: () => 0, randomBytes: (b: Uint8Array) => b };
  assert.throws(() => new SessionStore({ ...base, idleMs: 0 }), RangeError);
  assert.throws(() => new SessionStore({ ...base, sessionsMax: 0 }), RangeError);
});
