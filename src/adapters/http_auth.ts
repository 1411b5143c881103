/**
 * Who may use the control endpoint. API clients send `Authorization: Bearer <token>`. A browser
 * logs in once with the same token through the form at `/` (`POST /login`) and gets a session
 * cookie (HttpOnly, SameSite=Strict, Secure over TLS); every state-changing request it makes
 * must carry the session's CSRF token in `x-csrf-token`. `POST /logout` ends the session;
 * sessions expire (see {@link SessionStore}). Login attempts are limited per client address
 * (see {@link LoginLimiter}); the bearer header is not, as a wrong one earns nothing to retry.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { z } from "zod";
import { constantTimeEqual, type Session, type SessionStore } from "./http_session.ts";
import { problem, validated } from "./http_problem.ts";
import { loginPage } from "./dashboard/page.ts";
import type { LoginLimiter } from "./http_login_limit.ts";

/** The session cookie's name. */
export const SESSION_COOKIE = "lanfree_session";
/** The header a cookie-authenticated state-changing request carries its CSRF token in. */
export const CSRF_HEADER = "x-csrf-token";

/** The variables the auth middleware leaves on a request's context. */
export interface AuthVariables {
  /** The browser session the request came with; undefined for a bearer request. */
  session: Session | undefined;
}

/** Methods that change nothing: no CSRF token needed. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const LoginFormSchema = z.object({ token: z.string().max(1024) });

/** RFC 6750's Bearer header, with its credentials. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

function challenge(): Headers {
  return new Headers({ "www-authenticate": 'Bearer realm="lanfree"' });
}

/**
 * The session behind a request's cookie, if the cookie names a live one.
 *
 * @param c the request's context
 * @param sessions the store
 * @returns the session, or undefined
 */
export function sessionOf(c: Context, sessions: SessionStore): Session | undefined {
  const id = getCookie(c, SESSION_COOKIE);
  return id === undefined ? undefined : sessions.lookup(id);
}

/**
 * The middleware every protected route sits behind: a bearer header with the token, or a live
 * session cookie (plus the CSRF token for a state-changing method). 401 or 403 problem else.
 *
 * @param token the bearer token
 * @param sessions the browser sessions
 * @returns the middleware
 */
export function requireAuth(
  token: string,
  sessions: SessionStore,
): MiddlewareHandler<{ Variables: AuthVariables }> {
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (header !== undefined) {
      const presented = BEARER.exec(header)?.[1];
      if (presented === undefined || !constantTimeEqual(presented, token)) {
        problem(401, "Unauthorized", "the bearer token is wrong or malformed", challenge());
      }
      c.set("session", undefined);
      return await next();
    }
    const session = sessionOf(c, sessions);
    if (session === undefined) {
      problem(
        401,
        "Unauthorized",
        "send Authorization: Bearer <token>, or log in at / (a session may have expired)",
        challenge(),
      );
    }
    if (!SAFE_METHODS.has(c.req.method)) {
      if (!sessions.csrfMatches(session, c.req.header(CSRF_HEADER))) {
        problem(403, "CSRF token missing or wrong", `${c.req.method} needs ${CSRF_HEADER}`);
      }
    }
    c.set("session", session);
    await next();
  };
}

/**
 * The client's address as the host gave it: `Deno.serve` passes its handler info (with
 * `remoteAddr`) as the second argument, which Hono keeps as `c.env`. A host that gives none (an
 * in-process `app.request`, an edge worker) puts all its clients under `"unknown"`. Headers such
 * as `X-Forwarded-For` are not trusted: behind a proxy, every client shares the proxy's address.
 *
 * @param c the request's context
 * @returns the address, or `"unknown"`
 */
export function clientAddress(c: Context): string {
  const remote = (c.env as { remoteAddr?: { hostname?: unknown } } | undefined)?.remoteAddr;
  return typeof remote?.hostname === "string" ? remote.hostname : "unknown";
}

/**
 * The login and logout routes (`POST /login`, `POST /logout`). Each login attempt counts
 * against its client address's limit first; past it the answer is a 429 problem with
 * `Retry-After`, whatever the token.
 *
 * @param token the bearer token the login form must be given
 * @param sessions the browser sessions
 * @param limiter the per-address limit on login attempts
 * @returns the sub-app (mount at `/`)
 */
export function authRoutes(token: string, sessions: SessionStore, limiter: LoginLimiter): Hono {
  const app = new Hono();
  app.post("/login", async (c, next) => {
    const address = clientAddress(c);
    const verdict = limiter.attempt(address);
    if (!verdict.allowed) {
      problem(
        429,
        "Too many login attempts",
        `${limiter.attemptsMax} login attempts per ${limiter.windowMs / 1000} s from ${address}; ` +
          `try again in ${verdict.retryAfterSeconds} s`,
        new Headers({ "retry-after": String(verdict.retryAfterSeconds) }),
      );
    }
    await next();
  });
  app.post("/login", validated("form", LoginFormSchema), (c) => {
    const { token: given } = c.req.valid("form");
    if (!constantTimeEqual(given, token)) {
      return c.html(loginPage("That token is not this server's token."), 401);
    }
    const session = sessions.create();
    setCookie(c, SESSION_COOKIE, session.id, {
      httpOnly: true,
      sameSite: "Strict",
      secure: new URL(c.req.url).protocol === "https:",
      path: "/",
      maxAge: Math.floor(sessions.lifetimeMs / 1000),
    });
    return c.redirect("/", 303);
  });
  app.post("/logout", requireAuth(token, sessions), (c) => {
    const id = getCookie(c, SESSION_COOKIE);
    if (id !== undefined) sessions.delete(id);
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.body(null, 204);
  });
  return app;
}
