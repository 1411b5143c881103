/**
 * The brake on guessing the bearer token through the login form: each client address may make a
 * bounded number of `POST /login` attempts per fixed window; past it the endpoint answers 429
 * with `Retry-After` until the window ends. The table of addresses is bounded too: when it is
 * full, the address whose window began longest ago goes (an ended window first, as windows
 * are kept in order of their start). Time
 * comes in as a function, so the logic is tested without a clock.
 *
 * Written here rather than taken from `hono-rate-limiter`: its memory store keeps every address
 * seen in a window, with no bound on how many.
 *
 * @module
 */

/** How a {@link LoginLimiter} behaves. */
export interface LoginLimiterOptions {
  /** The clock, ms. */
  readonly nowMs: () => number;
  /** Attempts one address may make per window. Default 10. */
  readonly attemptsMax?: number;
  /** The window's length, ms. Default 60 000 (one minute). */
  readonly windowMs?: number;
  /** Most addresses tracked at once. Default 10 000. */
  readonly addressesMax?: number;
}

/** What {@link LoginLimiter.attempt} decided. */
export type LoginVerdict =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterSeconds: number };

interface Window {
  readonly startMs: number;
  attempts: number;
}

/**
 * Counts login attempts per client address in fixed windows.
 *
 * @example The eleventh attempt in a minute is refused until the minute ends
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginLimiter } from "./http_login_limit.ts";
 * let now = 0;
 * const limiter = new LoginLimiter({ nowMs: () => now, attemptsMax: 10, windowMs: 60_000 });
 * for (let i = 0; i < 10; i++) assert.ok(limiter.attempt("192.0.2.7").allowed);
 * assert.deepEqual(limiter.attempt("192.0.2.7"), { allowed: false, retryAfterSeconds: 60 });
 * assert.ok(limiter.attempt("192.0.2.8").allowed);
 * now = 60_000;
 * assert.ok(limiter.attempt("192.0.2.7").allowed);
 * ```
 */
export class LoginLimiter {
  readonly #nowMs: () => number;
  readonly attemptsMax: number;
  readonly windowMs: number;
  readonly addressesMax: number;
  /** Windows by address, the one that began first first (a new window moves to the end). */
  readonly #windows = new Map<string, Window>();

  /**
   * @param options the clock and the bounds
   * @throws {RangeError} for a bound that is not a positive integer
   */
  constructor(options: LoginLimiterOptions) {
    this.#nowMs = options.nowMs;
    this.attemptsMax = positive("attemptsMax", options.attemptsMax ?? 10);
    this.windowMs = positive("windowMs", options.windowMs ?? 60_000);
    this.addressesMax = positive("addressesMax", options.addressesMax ?? 10_000);
  }

  /** Addresses tracked now (at most `addressesMax`). */
  get size(): number {
    return this.#windows.size;
  }

  /**
   * Counts one attempt from an address.
   *
   * @param address the client's address (`"unknown"` when the host gives none)
   * @returns allowed, or refused with the whole seconds until the address's window ends
   */
  attempt(address: string): LoginVerdict {
    const now = this.#nowMs();
    let window = this.#windows.get(address);
    if (window === undefined || now - window.startMs >= this.windowMs) {
      this.#windows.delete(address);
      this.#makeRoom();
      window = { startMs: now, attempts: 0 };
      this.#windows.set(address, window);
    }
    if (window.attempts >= this.attemptsMax) {
      const leftMs = window.startMs + this.windowMs - now;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(leftMs / 1000)) };
    }
    window.attempts++;
    return { allowed: true };
  }

  /**
   * Drops windows from the front until one more fits. The map is in order of window start, so
   * ended windows go first and a live one only when every tracked window is live.
   */
  #makeRoom(): void {
    for (const address of this.#windows.keys()) {
      if (this.#windows.size < this.addressesMax) return;
      this.#windows.delete(address);
    }
  }
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}
