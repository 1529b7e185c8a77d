import { describe, expect, it } from '@jest/globals';

import { SidecarCode } from './codes.js';
import {
  defaultIdentityResolver,
  identityOfCertificate,
  parseSpiffeId,
  parseSubjectAltNames,
} from './spiffe.js';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const VALID = { validFrom: 'Jun  1 11:00:00 2026 GMT', validTo: 'Jun  1 13:00:00 2026 GMT' };

describe('parseSpiffeId', () => {
  it.each([
    [
      'spiffe://cluster.local/ns/erp/sa/crm',
      { trustDomain: 'cluster.local', namespace: 'erp', serviceAccount: 'crm' },
    ],
    [
      'spiffe://td/ns/a-b/sa/x.y-z',
      { trustDomain: 'td', namespace: 'a-b', serviceAccount: 'x.y-z' },
    ],
  ])('accepts %s', (id, expected) => {
    expect(parseSpiffeId(id)).toEqual(expected);
  });

  it.each([
    'spiffe://cluster.local/ns/erp/sa/crm/',
    'spiffe://cluster.local/ns/erp/sa/CRM',
    'spiffe://Cluster.Local/ns/erp/sa/crm',
    'spiffe://cluster.local/ns/erp/sa/crm%2Fx',
    'spiffe://cluster.local/ns//sa/crm',
    'spiffe://cluster.local/sa/crm/ns/erp',
    'spiffe://cluster.local/ns/erp/sa/crm?x=1',
    'SPIFFE://cluster.local/ns/erp/sa/crm',
    'https://cluster.local/ns/erp/sa/crm',
    'spiffe://cluster.local/ns/erp/sa/',
    `spiffe://cluster.local/ns/erp/sa/${'a'.repeat(3000)}`,
  ])('rejects %s', (id) => {
    expect(parseSpiffeId(id)).toBeNull();
  });
});

describe('parseSubjectAltNames', () => {
  it('splits entries and keeps a quoted comma inside one value', () => {
    expect(parseSubjectAltNames('URI:spiffe://a/ns/b/sa/c, DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://a/ns/b/sa/c' },
      { type: 'DNS', value: 'x' },
    ]);
    expect(parseSubjectAltNames('URI:"spiffe://a/ns/b/sa/c, URI:spiffe://evil"')).toEqual([
      { type: 'URI', value: 'spiffe://a/ns/b/sa/c, URI:spiffe://evil' },
    ]);
  });

  it('throws on malformed text', () => {
    expect(() => parseSubjectAltNames('garbage')).toThrow();
    expect(() => parseSubjectAltNames('URI:"unterminated')).toThrow();
  });
});

describe('identityOfCertificate', () => {
  const td = 'cluster.local';
  it('reads exactly one SPIFFE URI SAN of the trust domain', () => {
    const r = identityOfCertificate(
      { subjectAltName: 'DNS:crm.erp.svc, URI:spiffe://cluster.local/ns/erp/sa/crm', ...VALID },
      td,
      NOW,
    );
    expect(r).toMatchObject({
      ok: true,
      identity: {
        spiffeId: 'spiffe://cluster.local/ns/erp/sa/crm',
        namespace: 'erp',
        serviceAccount: 'crm',
      },
    });
  });

  it.each([
    ['no SAN', undefined, SidecarCode.InvalidPeerIdentity],
    ['DNS only', 'DNS:crm', SidecarCode.InvalidPeerIdentity],
    [
      'two URIs',
      'URI:spiffe://cluster.local/ns/erp/sa/crm, URI:spiffe://cluster.local/ns/erp/sa/fin',
      SidecarCode.InvalidPeerIdentity,
    ],
    [
      'a quoted URI smuggling a second one',
      'URI:"spiffe://cluster.local/ns/erp/sa/crm, URI:x"',
      SidecarCode.InvalidPeerIdentity,
    ],
    [
      'another trust domain',
      'URI:spiffe://evil.example/ns/erp/sa/crm',
      SidecarCode.InvalidPeerIdentity,
    ],
    ['not a SPIFFE ID', 'URI:https://crm', SidecarCode.InvalidPeerIdentity],
  ])('refuses %s', (_name, san, code) => {
    expect(identityOfCertificate({ subjectAltName: san, ...VALID }, td, NOW)).toMatchObject({
      ok: false,
      code,
    });
  });

  it.each([
    ['expired', NOW + 2 * 3_600_000],
    ['not yet valid', NOW - 2 * 3_600_000],
  ])('refuses a certificate that is %s at our clock', (_name, now) => {
    const r = identityOfCertificate(
      { subjectAltName: 'URI:spiffe://cluster.local/ns/erp/sa/crm', ...VALID },
      td,
      now,
    );
    expect(r).toMatchObject({
      ok: false,
      code: SidecarCode.PeerCertificateNotValid,
      spiffeId: 'spiffe://cluster.local/ns/erp/sa/crm',
    });
  });
});

describe('defaultIdentityResolver', () => {
  const identity = {
    spiffeId: 'spiffe://td/ns/erp/sa/crm-sa',
    trustDomain: 'td',
    namespace: 'erp',
    serviceAccount: 'crm-sa',
    notBefore: 0,
    notAfter: 1,
  };
  it('uses the ServiceAccount name unless the snapshot binds the identity', () => {
    expect(defaultIdentityResolver(identity, {})).toEqual({ module: 'crm-sa', namespace: 'erp' });
    expect(
      defaultIdentityResolver(identity, {
        identityBindings: { 'spiffe://td/ns/erp/sa/crm-sa': 'crm' },
      }),
    ).toEqual({ module: 'crm', namespace: 'erp' });
  });
  it('ignores inherited properties of the bindings object', () => {
    const idProto = { ...identity, spiffeId: 'constructor' };
    expect(defaultIdentityResolver(idProto, { identityBindings: {} }).module).toBe('crm-sa');
  });
});
