import { describe, expect, it } from 'vitest';
import { type SharedView, isNewer } from '../../src/shared-view.js';

const v = (epoch: string, generation: number, state: 'closed' | 'open' = 'closed'): SharedView => ({ epoch, generation, state });

describe('ordering of shared views', () => {
  it.each([
    ['a higher generation of the same life', v('100', 3), v('100', 2), true],
    ['the same generation', v('100', 2), v('100', 2), false],
    ['an older generation (a reply overtaken by the feed)', v('100', 1, 'open'), v('100', 2), false],
    ['the first write after a breaker never written', v('100', 0), v('', 0), true],
    ['a transition after a breaker never written', v('100', 1, 'open'), v('', 0), true],
    ['another life of the state hash (recreated)', v('200', 0), v('100', 5, 'open'), true],
    ['a breaker whose hash is gone', v('', 0), v('100', 5, 'open'), true],
    ['nothing written, twice', v('', 0), v('', 0), false],
  ])('%s', (_name, candidate, current, expected) => {
    expect(isNewer(candidate, current)).toBe(expected);
  });
});
