/**
 * Browser sessions of the control endpoint: a login with the bearer token makes a session (an
 * unguessable id for the cookie and a CSRF token the page sends back on every state-changing
 * request). Sessions expire after an idle time and after a lifetime, whichever comes first, and
 * the store holds a bounded number (the oldest is dropped to make room). Time and randomness
 * come in as functions, so the logic is tested without a clock or a browser.
 *
 * @module
 */

/** One live session. */
export interface Session {
  /** The cookie's value (43 base64url characters, 256 random bits). */
  readonly id: string;
  /** What a state-changing request must carry in `x-csrf-token` (256 random bits). */
  readonly csrfToken: string;
  /** When it was made, ms on the store's clock. */
  readonly createdMs: number;
  /** When it was last used. */
  lastUsedMs: number;
}

/** How a {@link SessionStore} behaves. */
export interface SessionStoreOptions {
  /** The clock, ms. */
  readonly nowMs: () => number;
  /** Fills an array with secure random bytes (`crypto.getRandomValues`). */
  readonly randomBytes: (bytes: Uint8Array) => Uint8Array;
  /** A session unused this long ends. Default 30 minutes. */
  readonly idleMs?: number;
  /** A session ends this long after login, used or not. Default 12 hours. */
  readonly lifetimeMs?: number;
  /** Most sessions kept; a login past it drops the least recently used. Default 1000. */
  readonly sessionsMax?: number;
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Compares two strings in time that depends on their lengths only.
 *
 * @param a one string
 * @param b the other
 * @returns whether they are equal
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const length = Math.max(a.length, b.length);
  let difference = a.length ^ b.length;
  for (let i = 0; i < length; i++) {
    difference |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return difference === 0;
}

/**
 * The sessions of one server.
 *
 * @example A session is found by its id, checks its CSRF token, and ends at logout
 * ```ts
 * import assert from "node:assert/strict";
 * import { SessionStore } from "./http_session.ts";
 * let now = 0;
 * const store = new SessionStore({
 *   nowMs: () => now,
 *   randomBytes: (bytes) => crypto.getRandomValues(bytes),
 * });
 * const session = store.create();
 * assert.equal(store.lookup(session.id), session);
 * assert.ok(store.csrfMatches(session, session.csrfToken));
 * store.delete(session.id);
 * assert.equal(store.lookup(session.id), undefined);
 * ```
 */
export class SessionStore {
  readonly #options: SessionStoreOptions;
  /** Sessions by id, least recently used first (a lookup moves one to the end). */
  readonly #sessions = new Map<string, Session>();
  readonly idleMs: number;
  readonly lifetimeMs: number;
  readonly sessionsMax: number;

  /** @param options the clock, the random source and the limits */
  constructor(options: SessionStoreOptions) {
    this.#options = options;
    this.idleMs = options.idleMs ?? 30 * 60_000;
    this.lifetimeMs = options.lifetimeMs ?? 12 * 3_600_000;
    this.sessionsMax = options.sessionsMax ?? 1000;
    if (!(this.idleMs > 0 && this.lifetimeMs > 0 && this.sessionsMax >= 1)) {
      throw new RangeError(
        `sessions need idleMs, lifetimeMs > 0 and sessionsMax >= 1, got ${this.idleMs}, ` +
          `${this.lifetimeMs}, ${this.sessionsMax}`,
      );
    }
  }

  #random(): string {
    return base64url(this.#options.randomBytes(new Uint8Array(32)));
  }

  /**
   * Makes a session (after a login with the right token).
   *
   * @returns the new session
   */
  create(): Session {
    const nowMs = this.#options.nowMs();
    this.#dropExpired(nowMs);
    while (this.#sessions.size >= this.sessionsMax) {
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
    const session = { id: this.#random(), csrfToken: this.#random(), createdMs: nowMs };
    if (session.id === session.csrfToken || this.#sessions.has(session.id)) {
      throw new Error("the random source repeated itself: refusing to make a session");
    }
    const made: Session = { ...session, lastUsedMs: nowMs };
    this.#sessions.set(made.id, made);
    return made;
  }

  /**
   * Finds a live session by its cookie value and marks it used.
   *
   * @param id the cookie's value
   * @returns the session, or undefined for an unknown or expired one (which is dropped)
   */
  lookup(id: string): Session | undefined {
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    const nowMs = this.#options.nowMs();
    this.#sessions.delete(id);
    if (this.#expired(session, nowMs)) return undefined;
    session.lastUsedMs = nowMs;
    this.#sessions.set(id, session);
    return session;
  }

  /**
   * When a session ends unless used again, ms on the store's clock.
   *
   * @param session a live session
   * @returns the earlier of its idle end and its lifetime end
   */
  expiresMs(session: Session): number {
    return Math.min(session.lastUsedMs + this.idleMs, session.createdMs + this.lifetimeMs);
  }

  /**
   * Whether a request's CSRF token is the session's.
   *
   * @param session the session the cookie named
   * @param token what the request carried (undefined when nothing)
   * @returns true only for the session's own token
   */
  csrfMatches(session: Session, token: string | undefined): boolean {
    return token !== undefined && constantTimeEqual(token, session.csrfToken);
  }

  /**
   * Ends a session (logout). Unknown ids are ignored.
   *
   * @param id the cookie's value
   */
  delete(id: string): void {
    this.#sessions.delete(id);
  }

  /** How many sessions are kept (expired ones not yet dropped included). */
  get size(): number {
    return this.#sessions.size;
  }

  #expired(session: Session, nowMs: number): boolean {
    return nowMs >= this.expiresMs(session);
  }

  #dropExpired(nowMs: number): void {
    for (const [id, session] of this.#sessions) {
      if (this.#expired(session, nowMs)) this.#sessions.delete(id);
    }
  }
}
