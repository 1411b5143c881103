/**
 * User and group names of owner ids, and ids of names, from `/etc/passwd` and `/etc/group` (as
 * tar records `uname`/`gname` and, as root, restores by name first). Deno has no getpwuid; the
 * local files are what it can read (accounts only known to a directory service are recorded by
 * id alone). Read once per process, bounded in size.
 *
 * @module
 */

import type { OwnerNames } from "../../core/backup/plan.ts";

/** Largest account file read. */
const ACCOUNT_FILE_BYTES_MAX = 16 << 20;

/** Names by id and ids by name of one account file. */
interface Accounts {
  readonly names: Map<number, string>;
  readonly ids: Map<string, number>;
}

function parseAccounts(text: string): Accounts {
  const names = new Map<number, string>();
  const ids = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [name, , idText] = line.split(":");
    const id = Number(idText);
    if (name === undefined || name === "" || !Number.isInteger(id) || id < 0) continue;
    if (!names.has(id)) names.set(id, name);
    if (!ids.has(name)) ids.set(name, id);
  }
  return { names, ids };
}

async function readAccounts(path: string): Promise<Accounts> {
  try {
    const info = await Deno.stat(path);
    if (!info.isFile || info.size > ACCOUNT_FILE_BYTES_MAX) return parseAccounts("");
    return parseAccounts(await Deno.readTextFile(path));
  } catch {
    return parseAccounts(""); // no account files (a container): ids alone
  }
}

let cached: Promise<{ users: Accounts; groups: Accounts }> | undefined;

function accounts() {
  cached ??= Promise.all([readAccounts("/etc/passwd"), readAccounts("/etc/group")]).then((
    [users, groups],
  ) => ({ users, groups }));
  return cached;
}

/**
 * The system's owner names, for manifests and tar headers.
 *
 * @returns lookups of user and group names by id
 *
 * @example Root's name
 * ```ts
 * import assert from "node:assert/strict";
 * import { ownerNames } from "./_owners.ts";
 * assert.equal((await ownerNames()).user(0), "root");
 * ```
 */
export async function ownerNames(): Promise<OwnerNames> {
  const { users, groups } = await accounts();
  return { user: (uid) => users.names.get(uid), group: (gid) => groups.names.get(gid) };
}

/**
 * The ids to restore an entry's owner with: the names' ids on this system when they exist (as
 * tar does unless told `--numeric-owner`), else the recorded ids.
 *
 * @param entry recorded ids and names
 * @returns the uid and gid to give the restored entry
 */
export async function ownerIds(
  entry: { uid: number; gid: number; user?: string; group?: string },
): Promise<{ uid: number; gid: number }> {
  const { users, groups } = await accounts();
  const uid = entry.user === undefined ? undefined : users.ids.get(entry.user);
  const gid = entry.group === undefined ? undefined : groups.ids.get(entry.group);
  return { uid: uid ?? entry.uid, gid: gid ?? entry.gid };
}
