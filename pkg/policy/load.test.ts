import { describe, expect, it } from '@jest/globals';
import { ErpguardError } from '../errors/errors.js';
import { describeOrigin, parsePolicyText } from './load.js';

const errorOf = (fn: () => unknown): ErpguardError => {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof ErpguardError) return error;
    throw error;
  }
  throw new Error('expected an ErpguardError');
};

describe('parsePolicyText', () => {
  it('splits multi-document files and remembers where each came from', () => {
    const docs = parsePolicyText('# header\na: 1\n---\nb: 2\n---\n\n---\nc: 3\n', 'p.yaml');
    expect(docs.map((d) => [d.index, d.line, d.value])).toEqual([
      ['0', 2, { a: 1 }],
      ['1', 4, { b: 2 }],
      ['3', 8, { c: 3 }],
    ]);
    expect(describeOrigin(docs[1]!)).toBe('p.yaml#1 (line 4)');
  });

  it('flattens List and ErpIntegrationPolicyList objects', () => {
    const docs = parsePolicyText(
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ a: 1 }, { a: 2 }] }),
      'list.json',
    );
    expect(docs.map((d) => d.index)).toEqual(['0.0', '0.1']);
  });

  it('names file, line and column on a syntax error', () => {
    const error = errorOf(() => parsePolicyText('spec:\n  rules: [a,\n  b: c: d\n', 'bad.yaml'));
    expect(error.code).toBe('ParseError');
    expect(error.message).toMatch(/^bad\.yaml:3:\d+: /);
  });

  it('rejects duplicate keys instead of silently keeping the last one', () => {
    const error = errorOf(() =>
      parsePolicyText('spec:\n  mode: Audit\n  mode: Enforce\n', 'dup.yaml'),
    );
    expect(error.message).toMatch(/dup\.yaml:3:3: duplicated mapping key/);
  });

  it('refuses a YAML bomb (aliases expanding exponentially) within bounded memory', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 10; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const error = errorOf(() => parsePolicyText(levels.join('\n'), 'bomb.yaml'));
    expect(error.code).toBe('ParseError');
    expect(error.message).toMatch(/bomb\.yaml:\d+:\d+: aliases exceeded/);
  });

  it('refuses an alias chain that stays under the alias limit but expands exponentially', () => {
    const lines = ['l0: &l0 [x, x]'];
    for (let i = 1; i < 30; i++) lines.push(`l${i}: &l${i} [*l${i - 1}, *l${i - 1}]`);
    const error = errorOf(() => parsePolicyText(lines.join('\n'), 'chain.yaml'));
    expect(error.code).toBe('InputTooLarge');
    expect(error.message).toMatch(/^chain\.yaml: expands to more than/);
  });

  it('refuses binary garbage with a clear message', () => {
    const garbage = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    const error = errorOf(() => parsePolicyText(garbage, 'blob.bin'));
    expect(error.message).toBe(
      'blob.bin: not a text file (contains NUL bytes); expected YAML or JSON',
    );
  });

  it('refuses deep nesting', () => {
    const error = errorOf(() => parsePolicyText('['.repeat(200) + ']'.repeat(200), 'deep.yaml'));
    expect(error.code).toBe('ParseError');
  });

  it('caps the number of policies in one input', () => {
    const items = Array.from({ length: 100_001 }, () => ({}));
    const error = errorOf(() =>
      parsePolicyText(JSON.stringify({ kind: 'List', items }), 'huge.json'),
    );
    expect(error.code).toBe('TooManyItems');
    expect(error.message).toMatch(/^huge\.json: more than 10000 policies/);
  });

  it('keeps timestamps and yes/no as strings (YAML 1.2 core schema)', () => {
    const [doc] = parsePolicyText('validUntil: 2027-06-30T00:00:00Z\nflag: no\n', 'x.yaml');
    expect(doc?.value).toEqual({ validUntil: '2027-06-30T00:00:00Z', flag: 'no' });
  });
});
