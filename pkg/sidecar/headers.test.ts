import { describe, expect, it } from '@jest/globals';

import {
  forwardRequestHeaders,
  forwardResponseHeaders,
  isGrpcContentType,
  isIdentityHeader,
} from './headers.js';

describe('forwardRequestHeaders', () => {
  it('removes hop-by-hop, pseudo and identity headers and adds the trusted ones', () => {
    const out = forwardRequestHeaders(
      {
        ':authority': 'finance',
        ':path': '/x',
        host: 'finance.erp.svc',
        connection: 'keep-alive, x-private',
        'x-private': 'hop',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        te: 'trailers',
        expect: '100-continue',
        'proxy-authorization': 'Basic x',
        'x-erpguard-caller': 'spiffe://evil',
        ['X-ERPGUARD-POLICY'.toLowerCase()]: 'all',
        'x-forwarded-client-cert': 'Hash=1',
        'x-forwarded-for': '1.2.3.4',
        forwarded: 'for=1.2.3.4',
        'x-real-ip': '1.2.3.4',
        'ssl-client-cert': 'x',
        'x-ssl-client-s-dn': 'CN=admin',
        'x-auth-request-user': 'admin',
        authorization: 'Bearer app-level',
        'content-type': 'application/json',
        accept: 'application/json',
      },
      { 'x-erpguard-caller': 'spiffe://cluster.local/ns/erp/sa/crm' },
    );
    expect(out).toEqual({
      host: 'finance.erp.svc',
      authorization: 'Bearer app-level',
      'content-type': 'application/json',
      accept: 'application/json',
      'x-erpguard-caller': 'spiffe://cluster.local/ns/erp/sa/crm',
    });
  });

  it('takes the host from :authority on HTTP/2 and keeps te: trailers for gRPC', () => {
    expect(
      forwardRequestHeaders({ ':authority': 'finance:443', te: 'trailers' }, {}, true),
    ).toEqual({ host: 'finance:443', te: 'trailers' });
  });
});

describe('forwardResponseHeaders', () => {
  it('drops connection-specific headers (invalid on HTTP/2) and the listed ones', () => {
    expect(
      forwardResponseHeaders(
        {
          connection: 'close',
          'keep-alive': 'x',
          'transfer-encoding': 'chunked',
          etag: '"1"',
          'content-type': 'application/json',
        },
        new Set(['etag']),
      ),
    ).toEqual({ 'content-type': 'application/json' });
  });
});

describe('isIdentityHeader', () => {
  it.each([
    'x-erpguard-anything',
    'x-forwarded-host',
    'x-client-cert',
    'x-spiffe-id',
    'true-client-ip',
    'cf-connecting-ip',
  ])('%s is an identity header', (h) => {
    expect(isIdentityHeader(h)).toBe(true);
  });
  it.each(['authorization', 'x-request-id', 'cookie', 'accept'])('%s is not', (h) => {
    expect(isIdentityHeader(h)).toBe(false);
  });
});

describe('isGrpcContentType', () => {
  it.each([
    ['application/grpc', true],
    ['application/grpc+proto', true],
    ['application/grpc;charset=x', true],
    ['application/grpc-web', false],
    ['application/grpc-web+proto', false],
    ['application/grpcx', false],
    ['application/json', false],
    [undefined, false],
  ])('%s → %s', (v, expected) => {
    expect(isGrpcContentType(v)).toBe(expected);
  });
});
