/**
 * The modules a module loads when it runs: its static imports, followed transitively, without
 * type-only imports (erased) and without dynamic `import()` (loaded only on the path that asks).
 * Read from `deno info --json`, for tests that keep a role's module graph lean.
 *
 * @module
 */

/** One module of `deno info --json`'s graph, as far as this reads it. */
interface InfoModule {
  readonly specifier: string;
  readonly dependencies?: ReadonlyArray<{
    readonly code?: { readonly specifier: string };
    readonly isDynamic?: boolean;
  }>;
}

/**
 * The specifiers `entry` loads when it runs (`file:` URLs, `npm:` and `node:` specifiers).
 *
 * @param entry the module (a `file:` URL)
 * @returns every module reached through static, non-type-only imports, the entry included
 */
export async function runtimeModules(entry: URL): Promise<Set<string>> {
  const config = new URL("../deno.json", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", config, entry.href],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${entry.href} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((module) => [module.specifier, module]));
  const reached = new Set<string>();
  const pending = [...info.roots];
  // Bounded: each module is pushed at most once per importer, and visited once.
  while (pending.length > 0) {
    const specifier = pending.pop()!;
    if (reached.has(specifier)) continue;
    reached.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.isDynamic || dependency.code === undefined) continue;
      pending.push(dependency.code.specifier);
    }
  }
  return reached;
}

/**
 * The modules of `modules` whose specifier contains one of `parts` (npm and node modules keep
 * the specifier their importer wrote, through the import map: `npm:zod@4.6.7`, `node:sqlite`).
 *
 * @param modules a graph from {@link runtimeModules}
 * @param parts path endings or package names (`"/server/backup_server.ts"`, `"npm:zod@"`)
 * @returns the matches, sorted
 */
export function modulesNamed(modules: ReadonlySet<string>, parts: readonly string[]): string[] {
  return [...modules].filter((specifier) => parts.some((part) => specifier.includes(part))).sort();
}
