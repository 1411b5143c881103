/**
 * A machine's table as Markdown, padded as `deno fmt` pads a Markdown table, so the formatted
 * doc (`docs/session.md`) holds it verbatim and a test can check the doc against the code.
 *
 * @module
 */

/** A row of a session machine's table. */
export interface SessionRow<S extends string, E extends string> {
  readonly state: S;
  readonly on: E;
  readonly next: S;
  readonly rule: string;
}

/**
 * @param rows the machine's rows
 * @param tail rows written out as cells (the rules every live state shares)
 * @returns the Markdown table
 */
export function sessionTableMarkdown(
  rows: readonly SessionRow<string, string>[],
  tail: readonly (readonly [string, string, string, string])[],
): string {
  const cells: (readonly string[])[] = [
    ["state", "on", "next", "rule"],
    ...rows.map((row) => [row.state, row.on, row.next, row.rule]),
    ...tail,
  ];
  const widths = cells[0]!.map((_, c) => Math.max(3, ...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) =>
    `| ${row.map((cell, c) => cell.padEnd(widths[c]!)).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join("\n");
}
