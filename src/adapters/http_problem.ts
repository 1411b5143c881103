/**
 * Problem responses (RFC 9457 `application/problem+json`) of the control endpoint, and the one
 * validation hook: every body and query is validated by `@hono/zod-validator` through
 * {@link validated}, so a schema mismatch is always a 400 problem naming the field.
 *
 * @module
 */

import type { ValidationTargets } from "hono";
import { HTTPException } from "hono/http-exception";
import { zValidator } from "@hono/zod-validator";
import type { z } from "zod";
import { firstIssue } from "../core/backup/request_path.ts";

/** The statuses the endpoint answers problems with. */
export type ProblemStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 500 | 503;

/**
 * An `application/problem+json` response.
 *
 * @param status the HTTP status
 * @param title a short, fixed summary of the kind of problem
 * @param detail what was wrong with this request (field, value)
 * @param headers extra headers (`www-authenticate`)
 * @returns the response
 */
export function problemResponse(
  status: ProblemStatus,
  title: string,
  detail: string,
  headers?: Headers,
): Response {
  const body = JSON.stringify({ type: "about:blank", title, status, detail });
  const all = new Headers(headers);
  all.set("content-type", "application/problem+json");
  return new Response(body, { status, headers: all });
}

/**
 * Ends the request with a problem response.
 *
 * @param status the HTTP status
 * @param title the kind of problem
 * @param detail what was wrong
 * @param headers extra headers
 * @returns never: throws the response
 */
export function problem(
  status: ProblemStatus,
  title: string,
  detail: string,
  headers?: Headers,
): never {
  throw new HTTPException(status, { res: problemResponse(status, title, detail, headers) });
}

/**
 * Validates a request part with a schema (Hono's zod validator); a mismatch is a 400 problem
 * naming the first field at fault, malformed JSON a 400 problem too (from {@link onProblem}).
 *
 * @param target `json`, `query`, `form` or `param`
 * @param schema the schema
 * @returns the middleware; the handler reads the value with `c.req.valid(target)`
 */
// zValidator's inferred type carries the validated value's type to `c.req.valid()`.
// deno-lint-ignore explicit-module-boundary-types
export function validated<T extends z.ZodType, Target extends keyof ValidationTargets>(
  target: Target,
  schema: T,
) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const { field, message } = firstIssue(result.error as unknown as z.ZodError);
      problem(400, "Invalid request", `${field}: ${message}`);
    }
  });
}

/**
 * The app's error handler: problems pass through, Hono's own plain-text errors (bearer-auth,
 * the validator's malformed JSON) are restated as problems, anything else is a 500 problem.
 *
 * @param error what a handler or middleware threw
 * @returns the problem response
 */
export function onProblem(error: Error): Response {
  if (!(error instanceof HTTPException)) {
    return problemResponse(500, "Internal error", error.message || String(error));
  }
  const response = error.getResponse();
  if (response.headers.get("content-type")?.includes("problem+json")) return response;
  const challenge = response.headers.get("www-authenticate");
  const headers = challenge === null ? undefined : new Headers({ "www-authenticate": challenge });
  if (error.status === 400 && /JSON/i.test(error.message)) {
    return problemResponse(400, "Malformed JSON", "the request body is not valid JSON");
  }
  const title = error.status === 401 ? "Unauthorized" : "Error";
  return problemResponse(error.status as ProblemStatus, title, error.message || title, headers);
}
