/**
 * The sidecar's limits and failure modes on real sockets: slow clients, oversized requests, an
 * app that hangs, an audit sink that fails, and a drain on shutdown.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import {
  startSidecar,
  type RunningSidecar,
  type SidecarConfig,
} from '../../pkg/sidecar/sidecar.js';
import {
  json,
  rawTlsRequest,
  startApp,
  tlsMaterialOf,
  ValueSource,
} from '../../pkg/sidecar/testing/harness.js';
import {
  createTestCa,
  issueLeaf,
  spiffeId,
  type TestCa,
  type TestLeaf,
} from '../../pkg/sidecar/testing/pki.js';
import type { PolicySnapshot } from '../../pkg/sidecar/types.js';
import { silentLogger } from '../../pkg/telemetry/logger.js';

const POLICY: ErpIntegrationPolicy = {
  apiVersion: 'erpguard.io/v1alpha1',
  kind: 'ErpIntegrationPolicy',
  metadata: { name: 'crm-calls-finance', namespace: 'erp' },
  spec: {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET', 'POST'], paths: ['/ok', '/slow', '/hang', '/upload'] }],
    rateLimit: { requestsPerSecond: 1000 },
  },
};

describe('sidecar limits and failure modes', () => {
  let dir: string;
  let ca: TestCa;
  let financeLeaf: TestLeaf;
  let creds: { key: string; cert: string; ca: string };
  let app: Awaited<ReturnType<typeof startApp>>;
  const started: RunningSidecar[] = [];

  const start = async (
    overrides: Partial<SidecarConfig> = {},
    inbound: Partial<SidecarConfig['inbound']> = {},
  ): Promise<RunningSidecar> => {
    const s = await startSidecar({
      module: 'finance',
      namespace: 'erp',
      trustDomain: 'cluster.local',
      inbound: { host: '127.0.0.1', port: 0, appPort: app.port, ...inbound },
      outbound: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      tls: new ValueSource(tlsMaterialOf(financeLeaf, ca)),
      policy: new ValueSource<PolicySnapshot>({ version: 1, policies: [POLICY] }),
      resolveDestination: () => undefined,
      tokenizeKey: 'robustness-key-0123456789',
      auditLogPath: join(dir, `audit-${started.length}.log`),
      registry: new Registry(),
      logger: silentLogger(),
      ...overrides,
    });
    started.push(s);
    return s;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-sidecar-robust-'));
    ca = createTestCa();
    financeLeaf = issueLeaf(ca, { uris: [spiffeId('finance')] });
    const crm = issueLeaf(ca, { uris: [spiffeId('crm')] });
    creds = { key: crm.keyPem, cert: crm.certPem, ca: ca.certPem };
    app = await startApp({
      '/ok': (_req, res) => json(res, 200, { ok: true }),
      '/slow': (_req, res) => setTimeout(() => json(res, 200, { slow: true }), 400),
      '/hang': () => undefined,
      '/upload': (_req, res, body) => json(res, 200, { bytes: body.length }),
    });
  });

  afterAll(async () => {
    for (const s of started) await s.close(100);
    await app?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('closes a connection that never finishes its headers (slowloris)', async () => {
    const s = await start({}, { headersTimeoutMs: 300 });
    const closed = await new Promise<boolean>((resolve, reject) => {
      const sock = tlsConnect(
        {
          host: '127.0.0.1',
          port: s.inboundPort,
          ...creds,
          ALPNProtocols: ['http/1.1'],
          checkServerIdentity: () => undefined,
        },
        () => {
          sock.write('GET /ok HTTP/1.1\r\nhost: finance\r\nx-slow: ');
        },
      );
      sock.on('close', () => resolve(true));
      sock.on('error', () => undefined);
      setTimeout(() => reject(new Error('connection still open')), 10_000).unref();
    });
    expect(closed).toBe(true);
  });

  it('refuses request bodies over the limit with 413, declared or chunked', async () => {
    const s = await start({}, { maxRequestBodyBytes: 1024 });
    const big = 'x'.repeat(2048);
    const declared = await rawTlsRequest(
      s.inboundPort,
      creds,
      `POST /upload HTTP/1.1\r\nhost: f\r\ncontent-length: ${big.length}\r\n\r\n${big}`,
    );
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body)).toMatchObject({ code: 'RequestTooLarge' });
    const chunked = await rawTlsRequest(
      s.inboundPort,
      creds,
      `POST /upload HTTP/1.1\r\nhost: f\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n800\r\n${big}\r\n0\r\n\r\n`,
    );
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ code: 'RequestTooLarge' });
    const small = await rawTlsRequest(
      s.inboundPort,
      creds,
      `POST /upload HTTP/1.1\r\nhost: f\r\ncontent-length: 10\r\nconnection: close\r\n\r\n0123456789`,
    );
    expect(JSON.parse(small.body)).toEqual({ bytes: 10 });
  });

  it('answers 431 to too many or too large header fields', async () => {
    const s = await start();
    const headers = Array.from({ length: 200 }, (_, i) => `x-h${i}: v`).join('\r\n');
    const r = await rawTlsRequest(
      s.inboundPort,
      creds,
      `GET /ok HTTP/1.1\r\nhost: f\r\n${headers}\r\nconnection: close\r\n\r\n`,
    );
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'RequestHeadersTooLarge' });
    const huge = await rawTlsRequest(
      s.inboundPort,
      creds,
      `GET /ok HTTP/1.1\r\nhost: f\r\nx-big: ${'a'.repeat(64 * 1024)}\r\nconnection: close\r\n\r\n`,
    );
    expect(huge.status).toBe(431);
  });

  it('answers 504 when the app does not respond in time', async () => {
    const s = await start({}, { upstreamHeadersTimeoutMs: 300 });
    const r = await rawTlsRequest(
      s.inboundPort,
      creds,
      'GET /hang HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n',
    );
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'UpstreamTimeout' });
  });

  (existsSync('/dev/full') ? it : it.skip)(
    'refuses calls with 503 AuditUnavailable when the audit sink fails',
    async () => {
      const s = await start({ auditLogPath: '/dev/full', audit: { sync: false } });
      const first = await rawTlsRequest(
        s.inboundPort,
        creds,
        'GET /ok HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n',
      );
      expect(first.status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      const second = await rawTlsRequest(
        s.inboundPort,
        creds,
        'GET /ok HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n',
      );
      expect(second.status).toBe(503);
      expect(JSON.parse(second.body)).toMatchObject({ code: 'AuditUnavailable' });
      expect((await fetch(`http://127.0.0.1:${s.adminPort}/readyz`)).status).toBe(503);
      expect((await fetch(`http://127.0.0.1:${s.adminPort}/healthz`)).status).toBe(200);
    },
  );

  it('drains in-flight calls on close, then stops accepting', async () => {
    const s = await start();
    const inflight = rawTlsRequest(
      s.inboundPort,
      creds,
      'GET /slow HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n',
    );
    await new Promise((r) => setTimeout(r, 100));
    const closing = s.close(5000);
    const r = await inflight;
    expect(r.status).toBe(200);
    await closing;
    await expect(
      rawTlsRequest(s.inboundPort, creds, 'GET /ok HTTP/1.1\r\nhost: f\r\n\r\n'),
    ).rejects.toThrow();
  });
});
