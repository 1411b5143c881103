/**
 * The `failed` report a side of a session sends when it stops: its reason in words, cut to what
 * the message carries.
 *
 * @module
 */

/** Longest reason a `failed` message carries, in characters. */
export const FAILED_REASON_CHARS_MAX = 4000;

/**
 * The message of any thrown value, cut to {@link FAILED_REASON_CHARS_MAX} characters.
 *
 * @param error what was thrown
 * @returns its message
 */
export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > FAILED_REASON_CHARS_MAX
    ? `${text.slice(0, FAILED_REASON_CHARS_MAX)}…`
    : text;
}

/**
 * The `failed` message a side sends on the error channel, best effort: a failure to send it
 * changes nothing, the side is failing already.
 *
 * @param error why the side stopped
 * @returns the send action
 */
export function failedReport(error: unknown): {
  readonly type: "send";
  readonly channel: "error";
  readonly body: { readonly type: "failed"; readonly message: string };
  readonly bestEffort: true;
} {
  return {
    type: "send",
    channel: "error",
    body: { type: "failed", message: errorText(error) },
    bestEffort: true,
  };
}
