import calculateSlot from 'cluster-key-slot';
import { describe, expect, it } from 'vitest';
import { breakerIdOf, breakerKeys, encodeId, isolationKeyList, keyList, ruleKeyList, stateKeyPattern } from '../../src/keys.js';

const ids = [
  'payments',
  'with spaces in it',
  'a:b:c',
  '{',
  '}',
  '{}',
  '}{',
  '{tag}',
  'a{b}c',
  '%7B',
  'ünïcødé ☃ 支付',
  '🙂'.repeat(50),
  'x'.repeat(1000),
  '',
];

describe('breaker keys', () => {
  it.each(ids.filter((id) => id !== '').map((id) => [id.slice(0, 40), id]))('%s: every key of the breaker hashes to one slot', (_label, id) => {
    const slots = isolationKeyList(breakerKeys('zenvark', id)).map((key) => calculateSlot(key));
    expect(new Set(slots).size).toBe(1);
  });

  it('the slot depends on the id alone, not on the part', () => {
    const keys = breakerKeys('zenvark', 'payments');
    expect(keys).toEqual({
      state: 'zenvark:{payments}:state',
      events: 'zenvark:{payments}:events',
      instances: 'zenvark:{payments}:instances',
      instanceEvents: 'zenvark:{payments}:instance-events',
    });
    expect(calculateSlot(keys.state)).toBe(calculateSlot('payments'));
  });

  it('each function takes its keys in the order the library names them', () => {
    const keys = breakerKeys('zenvark', 'payments');
    expect(keyList(keys)).toEqual([keys.state, keys.events]);
    expect(ruleKeyList(keys)).toEqual([keys.state, keys.events, keys.instances]);
    expect(isolationKeyList(keys)).toEqual([keys.state, keys.events, keys.instances, keys.instanceEvents]);
  });

  it('escaping is injective: different ids never share keys', () => {
    const encoded = ids.map(encodeId);
    expect(new Set(encoded).size).toBe(ids.length);
    expect(encodeId('{%}')).toBe('%7B%25%7D');
  });
});

describe('breaker ids from keys (listBreakers)', () => {
  it.each(ids.filter((id) => id !== '').map((id) => [id.slice(0, 40), id]))('%s: the id comes back from its state key', (_label, id) => {
    expect(breakerIdOf('zenvark', breakerKeys('zenvark', id).state)).toBe(id);
    expect(breakerIdOf('zen:vark', breakerKeys('zen:vark', id).state)).toBe(id);
  });

  it.each([
    ['another prefix', 'other:{payments}:state'],
    ['a longer prefix', 'zenvark:x:{payments}:state'],
    ['the events key', 'zenvark:{payments}:events'],
    ['the instances key', 'zenvark:{payments}:instances'],
    ['the instance-events key', 'zenvark:{payments}:instance-events'],
    ['an empty id', 'zenvark:{}:state'],
    ['a brace inside', 'zenvark:{a}:state}:state'],
    ['an escape this module does not write', 'zenvark:{a%41}:state'],
    ['a lowercase escape', 'zenvark:{a%7b}:state'],
  ])('%s is not a breaker of the prefix', (_label, key) => {
    expect(breakerIdOf('zenvark', key)).toBeUndefined();
  });

  it("the SCAN pattern escapes the prefix's glob characters", () => {
    expect(stateKeyPattern('zenvark')).toBe('zenvark:{*}:state');
    expect(stateKeyPattern('a*b?c[d]e\\f')).toBe('a\\*b\\?c\\[d\\]e\\\\f:{*}:state');
  });
});
