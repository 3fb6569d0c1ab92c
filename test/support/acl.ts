/**
 * The README's ACL lines (under `<!-- acl:<name> -->`, "Least privilege"), applied as
 * written, or with some rules taken out, to a server of the test's own.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The ACL SETUSER line the README gives under `<!-- acl:<name> -->`, as arguments. */
export function aclLine(name: string): { user: string; rules: string[] } {
  const line = new RegExp(`<!-- acl:${name} -->\\n\`\`\`\\n(ACL SETUSER [^\\n]+)\\n\`\`\``).exec(readme)?.[1];
  if (!line) throw new Error(`README.md has no ACL line for ${name}`);
  const [, , user, ...rules] = line.split(' ');
  return { user: user as string, rules };
}

/**
 * The rule README.md ("Tested servers") adds where the server has CLIENT SETINFO (Redis
 * 7.2 and later, Valkey), which ioredis sends on every connection; Redis 7.0 has no such
 * command and refuses the rule.
 */
const SETINFO_RULE = '+client|setinfo';
if (!readme.includes(`\`${SETINFO_RULE}\``)) throw new Error(`README.md no longer says when to add ${SETINFO_RULE}`);

/** The README's rules for this server: its line, and the SETINFO rule where the server has that command. */
async function rulesFor(admin: Redis, line: string[]): Promise<string[]> {
  const [info] = (await admin.call('COMMAND', 'INFO', 'client|setinfo')) as unknown[];
  return info ? [...line, SETINFO_RULE] : line;
}

/**
 * Creates the README's user `name` (with the `drop` rules removed from it, under a name of
 * its own) and returns its URL.
 */
export async function createUser(admin: Redis, server: { host: string; port: number }, name: string, ...drop: string[]): Promise<string> {
  const { username, password } = await createUserOn([admin], name, { drop, unique: drop.length > 0 });
  return `redis://${username}:${password}@${server.host}:${server.port}`;
}

/**
 * Creates the README's user `name` on every server of `admins` (the nodes of a cluster),
 * with the `add` rules added and the `drop` rules removed, under a name of its own when
 * `unique`; returns its credentials.
 */
export async function createUserOn(
  admins: Redis[],
  name: string,
  { add = [], drop = [], unique = false }: { add?: string[]; drop?: string[]; unique?: boolean } = {},
): Promise<{ username: string; password: string }> {
  const { user, rules } = aclLine(name);
  const password = randomBytes(8).toString('hex');
  const username = unique ? `${user}-${randomBytes(3).toString('hex')}` : user;
  for (const admin of admins) {
    const kept = (await rulesFor(admin, [...rules, ...add]))
      .filter((rule) => !drop.includes(rule))
      .map((rule) => (rule === '>PASSWORD' ? `>${password}` : rule));
    await admin.call('ACL', 'SETUSER', username, 'reset', ...kept);
  }
  return { username, password };
}
