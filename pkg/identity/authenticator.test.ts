import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from '@jest/globals';

import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { StaticTokenAuthenticator, type StaticTokenEntry } from './authenticator.js';

const dir = mkdtempSync(join(tmpdir(), 'erpguard-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NOW = Date.parse('2027-01-01T00:00:00Z');
const entries: StaticTokenEntry[] = [
  { token: 'finance-token', namespace: 'erp', serviceAccount: 'finance', module: 'finance' },
  {
    tokenSha256: createHash('sha256').update('crm-token').digest('hex'),
    namespace: 'erp',
    serviceAccount: 'crm',
    module: 'crm',
  },
  { token: 'expired', namespace: 'erp', serviceAccount: 'bi', expiresAt: '2026-12-31T23:59:59Z' },
  { token: 'other-audience', namespace: 'erp', serviceAccount: 'bi', audiences: ['kubernetes'] },
  {
    token: 'right-audience',
    namespace: 'erp',
    serviceAccount: 'bi',
    audiences: ['kubernetes', 'erpguard'],
  },
];
const auth = new StaticTokenAuthenticator(entries, { clock: () => NOW });

async function outcome(token: string): Promise<string> {
  try {
    const caller = await auth.authenticate(token);
    return caller === null
      ? 'null'
      : `${caller.namespace}/${caller.serviceAccount}/${caller.module ?? '-'}`;
  } catch (error) {
    return error instanceof ErpguardError ? `${error.code}: ${error.message}` : String(error);
  }
}

describe('StaticTokenAuthenticator', () => {
  it.each([
    ['a known token', 'finance-token', 'erp/finance/finance'],
    ['a token listed by its SHA-256', 'crm-token', 'erp/crm/crm'],
    ['an unknown token', 'nope', 'null'],
    ['an empty token', '', 'null'],
    ['a prefix of a known token', 'finance-toke', 'null'],
    ['a huge token', 'x'.repeat(100_000), 'null'],
    ['an expired token', 'expired', 'Unauthenticated: token expired'],
    [
      'a token for another audience',
      'other-audience',
      'Unauthenticated: token audience is not erpguard',
    ],
    ['a token listing our audience among others', 'right-audience', 'erp/bi/-'],
  ])('%s', async (_name, token, expected) => {
    expect(await outcome(token)).toBe(expected);
  });

  it('resolves modules and lists bindings', async () => {
    expect(await auth.moduleOf({ namespace: 'erp', serviceAccount: 'crm' })).toBe('crm');
    expect(await auth.moduleOf({ namespace: 'erp', serviceAccount: 'bi' })).toBeNull();
    expect(await auth.moduleOf({ namespace: 'other', serviceAccount: 'crm' })).toBeNull();
    expect(auth.bindings()).toEqual([
      { namespace: 'erp', serviceAccount: 'finance', module: 'finance' },
      { namespace: 'erp', serviceAccount: 'crm', module: 'crm' },
    ]);
  });

  it.each<[string, unknown[], string]>([
    [
      'no token at all',
      [{ namespace: 'a', serviceAccount: 'b' }],
      'tokens[0]: exactly one of token and tokenSha256 is required',
    ],
    [
      'both token forms',
      [{ token: 'x', tokenSha256: 'a'.repeat(64), namespace: 'a', serviceAccount: 'b' }],
      'tokens[0]: exactly one of token and tokenSha256 is required',
    ],
    [
      'a bad digest',
      [{ tokenSha256: 'xyz', namespace: 'a', serviceAccount: 'b' }],
      'tokens[0].tokenSha256: must be 64 lower-case hex digits',
    ],
    [
      'a bad namespace',
      [{ token: 'x', namespace: 'A_B', serviceAccount: 'b' }],
      'tokens[0].namespace: must be a DNS-1123 label',
    ],
    [
      'a bad service account',
      [{ token: 'x', namespace: 'a', serviceAccount: '-b' }],
      'tokens[0].serviceAccount: must be a DNS-1123 subdomain',
    ],
    [
      'an unknown field',
      [{ token: 'x', namespace: 'a', serviceAccount: 'b', admin: true }],
      'tokens[0].admin: unknown field',
    ],
    [
      'a bad expiry',
      [{ token: 'x', namespace: 'a', serviceAccount: 'b', expiresAt: 'soon' }],
      'tokens[0].expiresAt: must be an RFC 3339 time',
    ],
    [
      'a duplicate token',
      [
        { token: 'x', namespace: 'a', serviceAccount: 'b' },
        { token: 'x', namespace: 'a', serviceAccount: 'c' },
      ],
      'tokens[1]: duplicate token',
    ],
    [
      'one ServiceAccount bound to two modules',
      [
        { token: 'x', namespace: 'a', serviceAccount: 'b', module: 'm1' },
        { token: 'y', namespace: 'a', serviceAccount: 'b', module: 'm2' },
      ],
      'tokens[1].module: a/b is already bound to module m1',
    ],
    ['not a mapping', ['text'], 'tokens[0]: must be a mapping'],
  ])('refuses an entry with %s, naming the field', (_name, bad, message) => {
    expect(() => new StaticTokenAuthenticator(bad as StaticTokenEntry[])).toThrow(message);
  });

  it('loads a YAML token file', async () => {
    const path = join(dir, 'tokens.yaml');
    writeFileSync(
      path,
      'tokens:\n  - token: abc\n    namespace: erp\n    serviceAccount: wms\n    module: wms\n',
    );
    const fromFile = await StaticTokenAuthenticator.fromFile(path);
    expect(await fromFile.authenticate('abc')).toEqual({
      namespace: 'erp',
      serviceAccount: 'wms',
      module: 'wms',
    });
  });

  it.each([
    ['missing file', null, ErrorCode.FileUnreadable],
    ['broken YAML', 'tokens: [', ErrorCode.ParseError],
    ['no tokens list', 'other: 1', ErrorCode.InvalidConfig],
    ['alias bomb', 'a: &a [x]\nb: *a\ntokens: []', ErrorCode.ParseError],
  ])('refuses a token file with %s', async (name, content, code) => {
    const path = join(dir, `bad-${name.replace(/\W/g, '')}.yaml`);
    if (content !== null) writeFileSync(path, content);
    await expect(StaticTokenAuthenticator.fromFile(path)).rejects.toMatchObject({ code });
  });
});
