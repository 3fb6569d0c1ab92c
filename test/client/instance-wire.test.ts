/**
 * The wire of revision 7's instance rule and isolation, as src/functions.ts speaks it:
 * zv1_record with the rule ('held', the counts, the instances key), zv1_isolate (isolate,
 * rejoin), and the readers of the instance-events stream and the instances hash.
 */
import { describe, expect, it } from 'vitest';
import { RejoinReason } from '../../src/constants.js';
import { BreakerFunctions, type OutcomeSummary, readInstanceAudit, readReporters } from '../../src/functions.js';
import type { BreakerKeys } from '../../src/keys.js';
import { instanceRuleSpec } from '../../src/strategy-spec.js';
import { parseReporterEntry } from '../../src/transition.js';
import { CHANNEL, freshKeys, shippedLibrary } from '../lua/harness.js';

const redis = shippedLibrary();

const failures = (n: number): OutcomeSummary => ({ ok: 0, fail: n, slowOk: 0, slowFail: 0, head: n, maxRun: n, tail: n });
const successes = (n: number): OutcomeSummary => ({ ok: n, fail: 0, slowOk: 0, slowFail: 0, head: 0, maxRun: 0, tail: 0 });

const functions = (keys: BreakerKeys, actor: string) => new BreakerFunctions(redis(), keys, CHANNEL, actor, 100, 'consecutive:3:0:0', 10_000);

describe('zv1_record with an instance rule', () => {
  it('the rule is built from the options, a part not set written 0', () => {
    expect(instanceRuleSpec(undefined, undefined)).toBeUndefined();
    expect(instanceRuleSpec(2, undefined)).toBe('2:0');
    expect(instanceRuleSpec(undefined, 0.5)).toBe('0:0.5');
    expect(instanceRuleSpec(3, 0.25)).toBe('3:0.25');
  });

  it("one instance's failures are held with the counts; a second instance's open, with the lease and the counts in the entry", async () => {
    const keys = freshKeys();
    const rule = instanceRuleSpec(2, undefined);
    const held = await functions(keys, 'a').record(0, failures(3), true, rule);
    expect(held).toMatchObject({ status: 'held', view: { state: 'closed', generation: 0 }, published: undefined, token: 0 });
    expect(held.instances).toEqual({ failing: 1, reporting: 1 });

    const opened = await functions(keys, 'b').record(0, failures(1), true, rule);
    expect(opened).toMatchObject({ status: 'opened', view: { state: 'open', generation: 1 } });
    expect(opened.token).toBeGreaterThan(0);
    expect(opened.instances).toEqual({ failing: 2, reporting: 2 });
    expect(opened.published?.transition).toMatchObject({ reason: 'consecutive_failures', rule: 'minimum_instances:2', instances: '2', reporters: '2' });
    expect(opened.published?.lease?.holder).toBe('b');
  });

  it('without the rule a reply has no counts, and a trip entry has empty instance fields', async () => {
    const keys = freshKeys();
    const opened = await functions(keys, 'a').record(0, failures(3), false);
    expect(opened).toMatchObject({ status: 'opened', token: 0, instances: undefined });
    expect(opened.published?.transition).toMatchObject({ instances: '', reporters: '', rule: '' });
    expect(await redis().exists(keys.instances)).toBe(0);
  });
});

describe('zv1_isolate', () => {
  it('isolate and rejoin answer the fleet state and the entry id; the entries and the reporter entry read back', async () => {
    const keys = freshKeys();
    const a = functions(keys, 'a');
    expect((await a.record(0, successes(1), false)).status).toBe('ok');
    expect(await a.isolate(0, { failures: 2, calls: 2, slow: 0 })).toEqual({ status: 'not_reached', state: 'closed', generation: 0, epoch: expect.stringMatching(/^\d+$/), entryId: '' });

    const isolated = await a.isolate(0, { failures: 3, calls: 3, slow: 0 });
    expect(isolated).toMatchObject({ status: 'isolated', state: 'closed', generation: 0, entryId: expect.stringMatching(/^\d+-\d+$/) });
    const reporters = await readReporters(redis(), keys);
    expect(reporters.get('a')?.isolatedAtMs).toBeGreaterThan(0);
    expect(reporters.get('a')?.generation).toBe(0);

    const rejoined = await a.rejoin(0, RejoinReason.RECOVERED);
    expect(rejoined).toMatchObject({ status: 'rejoined', state: 'closed', generation: 0, entryId: expect.stringMatching(/^\d+-\d+$/) });
    expect((await a.rejoin(0, RejoinReason.RECOVERED)).status).toBe('not_isolated');

    const [rejoin, isolation] = await readInstanceAudit(redis(), keys, '+', '-', 10);
    expect(isolation).toMatchObject({
      id: isolated.entryId, from: 'closed', to: 'isolated', reason: 'consecutive_failures', failures: '3', calls: '3', threshold: '3',
      window: 'consecutive', actor: 'a', generation: 0, state: 'closed', mode: '', rule: '',
    });
    expect(rejoin).toMatchObject({ id: rejoined.entryId, from: 'isolated', to: 'closed', reason: 'recovered', actor: 'a', failures: '' });
    expect(await redis().xlen(keys.events)).toBe(0);
  });

  it('a stale generation and a breaker not closed are told, nothing written', async () => {
    const keys = freshKeys();
    const a = functions(keys, 'a');
    await a.record(0, failures(3), false);
    expect((await a.isolate(0, { failures: 3, calls: 3, slow: 0 })).status).toBe('stale_gen');
    expect(await a.isolate(1, { failures: 3, calls: 3, slow: 0 })).toMatchObject({ status: 'not_closed', state: 'open', generation: 1 });
    expect(await redis().exists(keys.instanceEvents)).toBe(0);
  });
});

describe('reporter entries', () => {
  it('read as stored, and text the library does not write is a bad reply', () => {
    expect(parseReporterEntry('3:10:1700000000000:9:1700000000001:0')).toEqual({
      generation: 3, lastPosition: 10, lastMs: 1_700_000_000_000, failurePosition: 9, failureMs: 1_700_000_000_001, isolatedAtMs: 0,
    });
    expect(() => parseReporterEntry('3:10')).toThrow(expect.objectContaining({ code: 'ZV_BAD_REPLY' }));
  });
});
