import { describe, expect, it } from '@jest/globals';
import { parsePathTemplate, templateMatches, type PathTemplate } from './path-template.js';

function parse(source: string): PathTemplate {
  const r = parsePathTemplate(source);
  if (!r.ok) throw new Error(`${source}: ${r.message}`);
  return r.template;
}

describe('parsePathTemplate', () => {
  it.each([
    ['/', ''],
    ['/**', '2'],
    ['/api/v1/customers', '000'],
    ['/api/v1/customers/{id}', '0001'],
    ['/api/v1/customers/{id}/invoices/**', '000102'],
    ['/files/*', '00'],
  ])('accepts %s (specificity %s)', (source, specificity) => {
    expect(parse(source).specificity).toBe(specificity);
  });

  it.each([
    ['relative', 'api/v1', "must start with '/'"],
    ['trailing slash', '/a/', "must not end with '/'"],
    ['empty segment', '/a//b', 'empty segments'],
    ['dot segment', '/a/../b', "'.' or '..'"],
    ['dots only', '/a/...', "'.' or '..'"],
    ['** in the middle', '/a/**/b', 'only allowed as the last segment'],
    ['partial parameter', '/a/{id}.json', 'whole-segment parameter'],
    ['unclosed parameter', '/a/{id', 'whole-segment parameter'],
    ['bad parameter name', '/a/{1d}', 'whole-segment parameter'],
    ['percent-encoding', '/a/%2F', 'percent-encoding'],
    ['path parameter', '/a;x=1', "';'"],
    ['space', '/a b', 'not allowed'],
    ['backslash', '/a\\b', 'not allowed'],
    ['too long', '/' + 'a'.repeat(1024), 'at most 1024'],
  ])('rejects %s', (_name, source, message) => {
    const r = parsePathTemplate(source);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(message);
  });
});

describe('templateMatches (reference semantics)', () => {
  it.each([
    ['/', [], true],
    ['/', ['a'], false],
    ['/**', [], true],
    ['/**', ['a', 'b'], true],
    ['/a/**', ['a'], true],
    ['/a/**', ['a', 'b', 'c'], true],
    ['/a/**', ['b'], false],
    ['/a/{id}', ['a', 'x y'], true],
    ['/a/{id}', ['a'], false],
    ['/a/{id}', ['a', 'b', 'c'], false],
    ['/a/{id}/b', ['a', 'b', 'b'], true],
    ['/a/B', ['a', 'b'], false],
  ] as const)('%s on %j → %s', (source, segments, expected) => {
    expect(templateMatches(parse(source), segments)).toBe(expected);
  });

  it('orders specificity left to right: literal < param < ** and ending < **', () => {
    const keys = ['/a/**', '/a', '/a/{x}', '/a/b', '/a/b/**', '/{x}/b'].map(
      (s) => parse(s).specificity,
    );
    expect([...keys].sort()).toEqual(['0', '00', '002', '01', '02', '10']);
  });
});
