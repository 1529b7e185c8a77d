/**
 * TokenReviewAuthenticator against an API-server stand-in on 127.0.0.1 that answers TokenReview
 * and ServiceAccount reads with whatever each case says, including the answers an attacker would
 * hope the authenticator misreads. (The real API server is exercised in
 * test/e2e/controller.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { KubeConfig } from '@kubernetes/client-node';

import { ErpguardError } from '../errors/errors.js';

import { createKubeClients } from './client.js';
import type { KubeClients } from './client.js';
import { parseServiceAccountUsername, TokenReviewAuthenticator } from './token-review.js';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

interface Scenario {
  review: { status: number; body: unknown };
  serviceAccount: { status: number; body: unknown };
}

let scenario: Scenario;
const received: { path: string; body: unknown }[] = [];
let server: Server;
let clients: KubeClients;

const reviewOk = (status: Record<string, unknown>): Scenario['review'] => ({
  status: 201,
  body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status },
});
const sa = (labels: Record<string, string>, uid = 'sa-uid-1'): Scenario['serviceAccount'] => ({
  status: 200,
  body: {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'finance', namespace: 'erp', uid, labels },
  },
});
const goodUser = {
  username: 'system:serviceaccount:erp:finance',
  uid: 'sa-uid-1',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:erp'],
  extra: {
    'authentication.kubernetes.io/pod-name': ['finance-7d9f'],
    'authentication.kubernetes.io/pod-uid': ['pod-uid-9'],
  },
};

beforeAll(async () => {
  server = createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        body: data === '' ? undefined : (JSON.parse(data) as unknown),
      });
      const answer = req.url?.includes('tokenreviews') ? scenario.review : scenario.serviceAccount;
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'fake',
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: 'u', token: 'controller-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
    currentContext: 'fake',
  });
  clients = createKubeClients(kc, { requestTimeoutMs: 5_000 });
});

afterAll(async () => {
  clients.close();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('TokenReviewAuthenticator', () => {
  it('returns namespace, ServiceAccount, module and pod for a valid token of our audience', async () => {
    scenario = {
      review: reviewOk({ authenticated: true, audiences: ['erpguard'], user: goodUser }),
      serviceAccount: sa({ 'erpguard.io/module': 'finance' }),
    };
    received.length = 0;
    const who = await new TokenReviewAuthenticator(clients).authenticate(TOKEN);
    expect(who).toEqual({
      namespace: 'erp',
      serviceAccount: 'finance',
      module: 'finance',
      podName: 'finance-7d9f',
      podUid: 'pod-uid-9',
    });
    const review = received.find((r) => r.path.includes('tokenreviews'))?.body as {
      spec: { token: string; audiences: string[] };
    };
    expect(review.spec).toEqual({ token: TOKEN, audiences: ['erpguard'] });
  });

  it('returns no module for an unlabelled ServiceAccount', async () => {
    scenario = {
      review: reviewOk({ authenticated: true, audiences: ['erpguard'], user: goodUser }),
      serviceAccount: sa({}),
    };
    expect(await new TokenReviewAuthenticator(clients).authenticate(TOKEN)).toEqual({
      namespace: 'erp',
      serviceAccount: 'finance',
      podName: 'finance-7d9f',
      podUid: 'pod-uid-9',
    });
  });

  const denied: { name: string; scenario: Scenario }[] = [
    {
      name: 'not authenticated',
      scenario: {
        review: reviewOk({ authenticated: false, error: 'token expired' }),
        serviceAccount: sa({}),
      },
    },
    {
      name: 'authenticated without audiences (a token for the API server itself)',
      scenario: {
        review: reviewOk({ authenticated: true, user: goodUser }),
        serviceAccount: sa({}),
      },
    },
    {
      name: 'authenticated for another audience only',
      scenario: {
        review: reviewOk({
          authenticated: true,
          audiences: ['https://kubernetes.default.svc'],
          user: goodUser,
        }),
        serviceAccount: sa({}),
      },
    },
    {
      name: 'a user, not a ServiceAccount',
      scenario: {
        review: reviewOk({
          authenticated: true,
          audiences: ['erpguard'],
          user: { username: 'alice@corp' },
        }),
        serviceAccount: sa({}),
      },
    },
    {
      name: 'a username with an extra segment',
      scenario: {
        review: reviewOk({
          authenticated: true,
          audiences: ['erpguard'],
          user: { ...goodUser, username: 'system:serviceaccount:erp:finance:admin' },
        }),
        serviceAccount: sa({ 'erpguard.io/module': 'finance' }),
      },
    },
    {
      name: 'a ServiceAccount recreated since the token was issued (uid mismatch)',
      scenario: {
        review: reviewOk({ authenticated: true, audiences: ['erpguard'], user: goodUser }),
        serviceAccount: sa({ 'erpguard.io/module': 'finance' }, 'sa-uid-2'),
      },
    },
    {
      name: 'a ServiceAccount that no longer exists',
      scenario: {
        review: reviewOk({ authenticated: true, audiences: ['erpguard'], user: goodUser }),
        serviceAccount: { status: 404, body: { kind: 'Status', code: 404, message: 'not found' } },
      },
    },
  ];

  it.each(denied)('returns null: $name', async ({ scenario: s }) => {
    scenario = s;
    expect(await new TokenReviewAuthenticator(clients).authenticate(TOKEN)).toBeNull();
  });

  it.each([
    ['empty', ''],
    ['not a JWT', 'hello world'],
    ['a header injection attempt', `${TOKEN}\r\nX-Evil: 1`],
    ['oversized', `${'a'.repeat(20_000)}.b.c`],
  ])('returns null without asking the API server for a %s token', async (_what, token) => {
    received.length = 0;
    expect(await new TokenReviewAuthenticator(clients).authenticate(token)).toBeNull();
    expect(received).toHaveLength(0);
  });

  it('throws a retryable error when the API server fails (try again, not denied)', async () => {
    scenario = {
      review: { status: 503, body: { kind: 'Status', code: 503, message: 'etcd down' } },
      serviceAccount: sa({}),
    };
    const err = await new TokenReviewAuthenticator(clients)
      .authenticate(TOKEN)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ErpguardError);
    expect((err as ErpguardError).code).toBe('Unavailable');
    expect((err as ErpguardError).retryable).toBe(true);
  });

  it('uses the ServiceAccount cache only when its uid matches the token', async () => {
    scenario = {
      review: reviewOk({ authenticated: true, audiences: ['erpguard'], user: goodUser }),
      serviceAccount: sa({ 'erpguard.io/module': 'from-api' }),
    };
    const cache = (uid: string) => ({
      get: () => ({
        metadata: {
          name: 'finance',
          namespace: 'erp',
          uid,
          labels: { 'erpguard.io/module': 'from-cache' },
        },
      }),
    });
    received.length = 0;
    const fresh = await new TokenReviewAuthenticator(clients, {
      serviceAccounts: cache('sa-uid-1'),
    }).authenticate(TOKEN);
    expect(fresh?.module).toBe('from-cache');
    expect(received.filter((r) => r.path.includes('serviceaccounts'))).toHaveLength(0);
    const stale = await new TokenReviewAuthenticator(clients, {
      serviceAccounts: cache('old'),
    }).authenticate(TOKEN);
    expect(stale?.module).toBe('from-api');
  });
});

describe('parseServiceAccountUsername', () => {
  it.each([
    ['system:serviceaccount:erp:finance', { namespace: 'erp', name: 'finance' }],
    ['system:serviceaccount:erp:finance.v2', { namespace: 'erp', name: 'finance.v2' }],
    ['system:serviceaccount:erp:', null],
    ['system:serviceaccount::finance', null],
    ['system:serviceaccount:erp:finance:x', null],
    ['system:serviceaccount:Erp:finance', null],
    ['system:serviceaccount:erp:fin/ance', null],
    ['system:serviceaccounts:erp:finance', null],
    ['system:node:worker-1', null],
    [`system:serviceaccount:${'a'.repeat(64)}:finance`, null],
    [undefined, null],
  ])('%s → %j', (username, want) => {
    expect(parseServiceAccountUsername(username)).toEqual(want);
  });
});
