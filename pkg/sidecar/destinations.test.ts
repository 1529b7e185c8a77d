import { describe, expect, it } from '@jest/globals';

import { serviceDnsDestinationResolver, staticDestinationResolver } from './destinations.js';
import { parseAuthority, parseProxyTarget } from './outbound.js';

describe('staticDestinationResolver', () => {
  const resolve = staticDestinationResolver([
    {
      module: 'finance',
      namespace: 'erp',
      address: { host: '127.0.0.1', port: 9443 },
      identities: ['spiffe://cluster.local/ns/erp/sa/finance'],
    },
    {
      module: 'crm',
      hosts: ['crm.example.internal'],
      address: { host: '127.0.0.1', port: 9444 },
      identities: ['spiffe://cluster.local/ns/erp/sa/crm'],
    },
  ]);
  it.each([
    ['finance', 'finance'],
    ['finance.erp', 'finance'],
    ['finance.erp.svc', 'finance'],
    ['FINANCE.erp.svc.cluster.local', 'finance'],
    ['crm', 'crm'],
    ['crm.example.internal', 'crm'],
  ])('resolves %s to %s', (host, module) => {
    expect(resolve(host, 8080)?.module).toBe(module);
  });
  it.each(['finance.other', 'finance.erp.svc.evil.example', 'metadata.google.internal', 'crm.erp'])(
    'does not resolve %s',
    (host) => {
      expect(resolve(host, undefined)).toBeUndefined();
    },
  );
  it('refuses one host naming two modules', () => {
    expect(() =>
      staticDestinationResolver([
        { module: 'a', hosts: ['x'], address: { host: 'h', port: 1 }, identities: [] },
        { module: 'b', hosts: ['x'], address: { host: 'h', port: 2 }, identities: [] },
      ]),
    ).toThrow(/names both/);
  });
});

describe('serviceDnsDestinationResolver', () => {
  const resolve = serviceDnsDestinationResolver({
    trustDomain: 'cluster.local',
    modules: { finance: { namespace: 'erp', serviceAccounts: ['finance', 'finance-batch'] } },
  });
  it('maps the Service name to its inbound port and expected identities', () => {
    expect(resolve('finance.erp.svc', 80)).toEqual({
      module: 'finance',
      address: { host: 'finance.erp.svc.cluster.local', port: 15443 },
      identities: [
        'spiffe://cluster.local/ns/erp/sa/finance',
        'spiffe://cluster.local/ns/erp/sa/finance-batch',
      ],
      serverName: 'finance.erp.svc.cluster.local',
    });
    expect(resolve('finance', 80)).toBeUndefined();
    expect(resolve('finance.other.svc', 80)).toBeUndefined();
  });
});

describe('parseProxyTarget', () => {
  it.each([
    [
      'http://finance.erp.svc:8080/api/v1/x?a=1',
      undefined,
      { host: 'finance.erp.svc', port: 8080, path: '/api/v1/x?a=1' },
    ],
    [
      'HTTP://Finance.ERP.svc./a/../b',
      undefined,
      { host: 'finance.erp.svc', port: undefined, path: '/a/../b' },
    ],
    ['http://finance', undefined, { host: 'finance', port: undefined, path: '/' }],
    ['http://finance?x=1', undefined, { host: 'finance', port: undefined, path: '/?x=1' }],
    ['http://[::1]:8080/x', undefined, { host: '::1', port: 8080, path: '/x' }],
    ['/api/v1/x', 'finance:8080', { host: 'finance', port: 8080, path: '/api/v1/x' }],
  ])('parses %s (Host %s) keeping the raw path', (url, host, expected) => {
    expect(parseProxyTarget(url, host)).toEqual({ ok: true, ...expected });
  });

  it.each([
    ['https://finance/x', undefined],
    ['http://user:pw@finance/x', undefined],
    ['http://finance:99999/x', undefined],
    ['http://fin ance/x', undefined],
    ['/x', undefined],
    ['/x', 'a@b'],
    ['*', 'finance'],
    ['ftp://finance/x', undefined],
  ])('refuses %s (Host %s)', (url, host) => {
    expect(parseProxyTarget(url, host).ok).toBe(false);
  });

  it('parses authorities strictly', () => {
    expect(parseAuthority('finance:0')).toBeUndefined();
    expect(parseAuthority('')).toBeUndefined();
    expect(parseAuthority('a_b.local:1')).toEqual({ host: 'a_b.local', port: 1 });
  });
});
