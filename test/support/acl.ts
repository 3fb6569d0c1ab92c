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
 * Creates the README's user `name` (with the `drop` rules removed from it, under a name of
 * its own) and returns its URL.
 */
export async function createUser(admin: Redis, server: { host: string; port: number }, name: string, ...drop: string[]): Promise<string> {
  const { user, rules } = aclLine(name);
  const password = randomBytes(8).toString('hex');
  const username = drop.length === 0 ? user : `${user}-${randomBytes(3).toString('hex')}`;
  const kept = rules.filter((rule) => !drop.includes(rule)).map((rule) => (rule === '>PASSWORD' ? `>${password}` : rule));
  await admin.call('ACL', 'SETUSER', username, 'reset', ...kept);
  return `redis://${username}:${password}@${server.host}:${server.port}`;
}
