import { describe, expect, it } from '@jest/globals';
import { canonicalSelector, parseSelector, replaceSelected, selectorCovers } from './selector.js';

const steps = (text: string) => {
  const parsed = parseSelector(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.steps;
};

describe('parseSelector', () => {
  it.each([
    ['$.items[*].iban', '$.items[*].iban'],
    ["$['items'][*]['iban']", '$.items[*].iban'],
    ['$.customer.*', '$.customer[*]'],
    ['$.lines[0].amount', '$.lines[0].amount'],
    ["$['tax id']", "$['tax id']"],
  ])('%s is %s', (text, canonical) => {
    expect(canonicalSelector(steps(text))).toBe(canonical);
  });

  it.each([
    ['items.iban', "must start with '$'"],
    ['$', "must select a field below the root '$'"],
    ['$..iban', "recursive descent '..' is not supported"],
    ['$.items[?(@.iban)]', 'filters and scripts are not supported'],
    ['$.items[-1]', 'filters and scripts are not supported'],
    ['$.', 'invalid field name'],
    ['$' + '.a'.repeat(40), 'at most 32 steps'],
  ])('rejects %s', (text, message) => {
    const parsed = parseSelector(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toContain(message);
  });
});

describe('replaceSelected', () => {
  it('replaces every selected value and counts them, creating nothing', () => {
    const body = {
      items: [
        { iban: 'DE89370400440532013000', email: 'a@x.de' },
        { email: 'b@x.de' },
        { iban: null, email: 'c@x.de' },
      ],
      total: 3,
    };
    const count = replaceSelected(body, steps('$.items[*].iban'), () => '***');
    expect(count).toBe(2);
    expect(body.items).toEqual([
      { iban: '***', email: 'a@x.de' },
      { email: 'b@x.de' },
      { iban: '***', email: 'c@x.de' },
    ]);
  });

  it('ignores shapes that do not match instead of failing', () => {
    const body = { items: 'not a list', other: [1, 2] };
    expect(replaceSelected(body, steps('$.items[*].iban'), () => 'x')).toBe(0);
    expect(replaceSelected(body, steps('$.other[5]'), () => 'x')).toBe(0);
    expect(body).toEqual({ items: 'not a list', other: [1, 2] });
  });

  it('does not treat inherited properties as fields', () => {
    const body: Record<string, unknown> = {};
    expect(replaceSelected(body, steps('$.constructor'), () => 'x')).toBe(0);
    expect(replaceSelected(body, steps("$['__proto__']"), () => 'x')).toBe(0);
  });
});

describe('selectorCovers', () => {
  it.each([
    ['$.items[*]', '$.items[*].email', true],
    ['$.items[*].email', '$.items[*].email', true],
    ['$.*', '$.customer.iban', true],
    ['$.items[0]', '$.items[*].email', false],
    ['$.items[*].email', '$.items[*]', false],
    ['$.a', '$.b.a', false],
  ])('%s covers %s: %s', (outer, inner, expected) => {
    expect(selectorCovers(steps(outer), steps(inner))).toBe(expected);
  });
});
