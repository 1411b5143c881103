/**
 * Canonical paths for root checks. Components are resolved one by one, as the kernel does: a
 * symlink is followed before a later `..` applies to it; components that do not exist (and so
 * cannot be symlinks) are kept as they are, and a later `..` removes them.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";

const COMPONENTS_MAX = 4096;

/**
 * Resolves `path` (relative to the current directory) to a canonical absolute path.
 *
 * @param path any path
 * @returns the canonical path
 *
 * @example
 * ```ts
 * import { canonicalPath } from "./paths.ts";
 * console.assert((await canonicalPath("/tmp/does-not-exist/../x")).endsWith("/x"));
 * ```
 */
export async function canonicalPath(path: string): Promise<string> {
  const absolute = isAbsolute(path) ? path : join(Deno.cwd(), path);
  const components = absolute.split("/");
  if (components.length > COMPONENTS_MAX) {
    throw new RangeError(`path has over ${COMPONENTS_MAX} components`);
  }
  let real = "/";
  const virtual: string[] = []; // components below the deepest existing directory
  for (const component of components) {
    if (component === "" || component === ".") continue;
    if (component === "..") {
      if (virtual.length > 0) virtual.pop();
      else real = dirname(real);
      continue;
    }
    if (virtual.length > 0) {
      virtual.push(component);
      continue;
    }
    try {
      real = await Deno.realPath(join(real, component));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      virtual.push(component);
    }
  }
  return join(real, ...virtual);
}

/**
 * True when `path` is `root` or below it (both canonical absolute paths).
 *
 * @param path a canonical path
 * @param root a canonical directory
 * @returns whether `path` lies inside `root`
 */
export function isInsidePath(path: string, root: string): boolean {
  const base = root.endsWith("/") ? root : `${root}/`;
  return path === root || path.startsWith(base);
}

/**
 * The warning a restore into `target` deserves when the target lies inside the snapshot's own
 * source: the next backup of that source would hold the restored copy too.
 *
 * @param source the snapshot's source as its manifest records it
 * @param target the restore target as given
 * @returns the warning, or undefined
 *
 * @example
 * ```ts
 * import { targetInsideSourceWarning } from "./paths.ts";
 * console.assert((await targetInsideSourceWarning("/data", "/data/restored")) !== undefined);
 * console.assert((await targetInsideSourceWarning("/data", "/elsewhere")) === undefined);
 * ```
 */
export async function targetInsideSourceWarning(
  source: string,
  target: string,
): Promise<string | undefined> {
  if (!isInsidePath(await canonicalPath(target), source)) return undefined;
  return `target ${target} is inside the snapshot's source ${source}: ` +
    `the next backup of ${source} will hold the restored copy too`;
}
