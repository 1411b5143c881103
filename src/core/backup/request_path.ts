/**
 * Requests as the HTTP adapter and the job options check them: a file-system path (not empty,
 * no NUL byte, at most PATH_MAX bytes), and how a refused value is named (its field and why).
 *
 * @module
 */

import { z } from "zod";

/** Longest path a request may name, in UTF-8 bytes (Linux PATH_MAX). */
export const REQUEST_PATH_BYTES_MAX = 4096;

/** A file-system path in a request: not empty, no NUL byte, at most PATH_MAX bytes. */
export const RequestPathSchema = z.string().min(1)
  .refine((path) => !path.includes("\0"), "contains a NUL byte")
  .refine(
    (path) => new TextEncoder().encode(path).length <= REQUEST_PATH_BYTES_MAX,
    `is longer than ${REQUEST_PATH_BYTES_MAX} bytes`,
  );

/**
 * The field and reason of a schema's first complaint, as a refusal names them (`repo`, `db`,
 * or the unknown keys; `(body)` for the whole value).
 *
 * @param error what zod refused
 * @returns the field and the message
 */
export function firstIssue(error: z.ZodError): { field: string; message: string } {
  const issue = error.issues[0]!;
  const field = issue.path.length > 0
    ? issue.path.join(".")
    : issue.code === "unrecognized_keys"
    ? (issue as { keys?: string[] }).keys?.join(", ") ?? "(body)"
    : "(body)";
  return { field, message: issue.message };
}
