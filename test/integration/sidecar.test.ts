/**
 * The sidecar end to end on loopback: real mTLS with certificates made here, real HTTP/1.1, HTTP/2
 * and gRPC, a real app behind the inbound side, and a second sidecar's outbound proxy in front.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { Client, Pool } from 'undici';

import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { verifyAuditChain } from '../../pkg/sidecar/audit-log.js';
import { staticDestinationResolver } from '../../pkg/sidecar/destinations.js';
import { startSidecar, type RunningSidecar } from '../../pkg/sidecar/sidecar.js';
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
import type { PolicySnapshot, TlsMaterial } from '../../pkg/sidecar/types.js';
import { silentLogger } from '../../pkg/telemetry/logger.js';

const PROTO = `
syntax = "proto3";
package erp.finance.v1;
service Invoices {
  rpc GetInvoice (GetInvoiceRequest) returns (Invoice);
  rpc DeleteInvoice (GetInvoiceRequest) returns (Invoice);
  rpc ListInvoices (ListInvoicesRequest) returns (stream Invoice);
}
message GetInvoiceRequest { string id = 1; }
message ListInvoicesRequest { int32 count = 1; }
message Invoice { string id = 1; string iban = 2; string caller = 3; }
`;

function policy(name: string, spec: ErpIntegrationPolicy['spec']): ErpIntegrationPolicy {
  return {
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: { name, namespace: 'erp' },
    spec,
  };
}

const POLICIES: ErpIntegrationPolicy[] = [
  policy('crm-reads-finance', {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [
      { methods: ['GET'], paths: ['/api/v1/customers', '/api/v1/customers/{id}'] },
      { methods: ['POST'], paths: ['/api/v1/customers/{id}/notes'] },
      { grpc: { service: 'erp.finance.v1.Invoices', methods: ['GetInvoice', 'ListInvoices'] } },
    ],
    rateLimit: { requestsPerSecond: 1000, burst: 1000 },
    dataProtection: { mask: ['$.items[*].iban'], tokenize: ['$.items[*].email'] },
  }),
  policy('crm-echo', {
    source: { module: 'crm' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET', 'POST'], paths: ['/echo', '/slow'] }],
    rateLimit: { requestsPerSecond: 1000 },
  }),
  policy('wms-reads-stock', {
    source: { module: 'wms' },
    destination: { module: 'finance' },
    rules: [{ methods: ['GET'], paths: ['/api/v1/stock'] }],
    rateLimit: { requestsPerSecond: 1, burst: 2 },
  }),
  policy('bi-trial', {
    source: { module: 'bi' },
    destination: { module: 'finance' },
    mode: 'Audit',
    rules: [{ methods: ['GET'], paths: ['/api/v1/reports/**'] }],
    rateLimit: { requestsPerSecond: 1, burst: 1 },
  }),
];

const CUSTOMERS = {
  items: [
    { id: 1, name: 'Acme', iban: 'DE89370400440532013000', email: 'ap@acme.example' },
    { id: 2, name: 'Globex', iban: 'FR1420041010050500013M02606', email: 'ar@globex.example' },
  ],
};

interface Peer {
  leaf: TestLeaf;
  creds: { key: string; cert: string; ca: string };
}

describe('sidecar (inbound, outbound, audit) over real mTLS', () => {
  let dir: string;
  let ca: TestCa;
  let otherCa: TestCa;
  const now = { t: Date.now() };
  const clock = (): number => now.t;
  let financeTls: ValueSource<TlsMaterial>;
  let financePolicy: ValueSource<PolicySnapshot>;
  let finance: RunningSidecar;
  let crm: RunningSidecar;
  let app: Awaited<ReturnType<typeof startApp>>;
  let grpcServer: grpc.Server;
  let grpcPort: number;
  let registry: Registry;
  let peers: Record<string, Peer>;
  let InvoicesClient: grpc.ServiceClientConstructor;
  let auditPath: string;
  let crmAuditPath: string;
  let revokedLeaf: TestLeaf;

  const peer = (leaf: TestLeaf, root: TestCa = ca): Peer => ({
    leaf,
    creds: { key: leaf.keyPem, cert: leaf.certPem, ca: root.certPem },
  });
  const get = (
    p: Peer,
    path: string,
    extra = '',
  ): Promise<{ status: number; headers: Record<string, string>; body: string }> =>
    rawTlsRequest(
      finance.inboundPort,
      p.creds,
      `GET ${path} HTTP/1.1\r\nhost: finance\r\n${extra}connection: close\r\n\r\n`,
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-sidecar-'));
    auditPath = join(dir, 'finance', 'audit.log');
    crmAuditPath = join(dir, 'crm', 'audit.log');
    ca = createTestCa('erpguard test root');
    otherCa = createTestCa('some other root');
    const financeLeaf = issueLeaf(ca, { uris: [spiffeId('finance')] });
    const crmLeaf = issueLeaf(ca, { uris: [spiffeId('crm')] });
    revokedLeaf = issueLeaf(ca, { uris: [spiffeId('revoked-sa')] });
    peers = {
      crm: peer(crmLeaf),
      wms: peer(issueLeaf(ca, { uris: [spiffeId('wms')] })),
      bi: peer(issueLeaf(ca, { uris: [spiffeId('bi')] })),
      hr: peer(issueLeaf(ca, { uris: [spiffeId('hr')] })),
      revoked: peer(revokedLeaf),
      twoUris: peer(issueLeaf(ca, { uris: [spiffeId('crm'), spiffeId('finance')] })),
      noUri: peer(issueLeaf(ca, { uris: [], dns: ['crm.erp.svc'] })),
      otherDomain: peer(issueLeaf(ca, { uris: [spiffeId('crm', 'erp', 'evil.example')] })),
      notSpiffe: peer(issueLeaf(ca, { uris: ['https://crm.erp.svc/'] })),
      wrongCa: peer(issueLeaf(otherCa, { uris: [spiffeId('crm')] })),
      expired: peer(
        issueLeaf(ca, {
          uris: [spiffeId('crm')],
          notBefore: new Date(Date.now() - 7_200_000),
          notAfter: new Date(Date.now() - 3_600_000),
        }),
      ),
      notYetValid: peer(
        issueLeaf(ca, {
          uris: [spiffeId('crm')],
          notBefore: new Date(Date.now() + 3_600_000),
          notAfter: new Date(Date.now() + 7_200_000),
        }),
      ),
    };

    app = await startApp({
      '/echo': (req, res, body) =>
        json(res, 200, {
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: body.toString('utf8'),
        }),
      '/slow': (_req, res) => setTimeout(() => json(res, 200, { slow: true }), 300),
      '/api/v1/customers': (_req, res) => json(res, 200, CUSTOMERS),
      '/api/v1/customers/gz': (_req, res) => {
        const body = gzipSync(Buffer.from(JSON.stringify(CUSTOMERS)));
        res.writeHead(200, {
          'content-type': 'application/json; charset=utf-8',
          'content-encoding': 'gzip',
          'content-length': String(body.length),
        });
        res.end(body);
      },
      '/api/v1/customers/big': (_req, res) => {
        const items = Array.from({ length: 20_000 }, (_, i) => ({
          id: i,
          iban: `DE${i}`.padEnd(22, '0'),
          email: `u${i}@x.example`,
          pad: 'x'.repeat(40),
        }));
        json(res, 200, { items });
      },
      '/api/v1/customers/chunked-big': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"items":[');
        for (let i = 0; i < 30_000; i++)
          res.write(`${i === 0 ? '' : ','}{"iban":"DE${i}","pad":"${'y'.repeat(30)}"}`);
        res.end(']}');
      },
      '/api/v1/customers/text': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('IBAN DE89370400440532013000');
      },
      '/api/v1/customers/broken': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"items":[{"iban":"DE89370400440532013000"}');
      },
      '/api/v1/customers/empty': (_req, res) => res.writeHead(204).end(),
      '/api/v1/customers/zstd': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' });
        res.end('(\xb5/\xfd not really zstd');
      },
      '/api/v1/stock': (_req, res) => json(res, 200, { stock: 7 }),
      '*': (req, res) => json(res, 200, { path: req.url }),
    });

    const protoFile = join(dir, 'invoices.proto');
    await writeFile(protoFile, PROTO);
    const pkg = grpc.loadPackageDefinition(
      protoLoader.loadSync(protoFile, { keepCase: true }),
    ) as unknown as {
      erp: { finance: { v1: { Invoices: grpc.ServiceClientConstructor } } };
    };
    InvoicesClient = pkg.erp.finance.v1.Invoices;
    grpcServer = new grpc.Server();
    const callerOf = (md: grpc.Metadata): string => String(md.get('x-erpguard-caller')[0] ?? '');
    grpcServer.addService(InvoicesClient.service, {
      GetInvoice: (
        call: grpc.ServerUnaryCall<{ id: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) =>
        cb(null, {
          id: call.request.id,
          iban: 'DE89370400440532013000',
          caller: callerOf(call.metadata),
        }),
      DeleteInvoice: (
        _call: grpc.ServerUnaryCall<{ id: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => cb(null, { id: 'deleted' }),
      ListInvoices: (call: grpc.ServerWritableStream<{ count: number }, unknown>) => {
        for (let i = 0; i < call.request.count; i++)
          call.write({ id: `inv-${i}`, caller: callerOf(call.metadata) });
        call.end();
      },
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );

    financeTls = new ValueSource(tlsMaterialOf(financeLeaf, ca));
    financePolicy = new ValueSource<PolicySnapshot>();
    registry = new Registry();
    finance = await startSidecar({
      module: 'finance',
      namespace: 'erp',
      trustDomain: 'cluster.local',
      inbound: {
        host: '127.0.0.1',
        port: 0,
        appPort: app.port,
        appGrpcPort: grpcPort,
        maskBodyLimit: 256 * 1024,
      },
      outbound: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      tls: financeTls,
      policy: financePolicy,
      resolveDestination: () => undefined,
      tokenizeKey: 'test-tokenize-key-0123456789',
      auditLogPath: auditPath,
      registry,
      logger: silentLogger(),
      clock,
    });
    const crmDestinations = [
      {
        module: 'finance',
        namespace: 'erp',
        address: { host: '127.0.0.1', port: finance.inboundPort },
        identities: [spiffeId('finance')],
      },
      // A resolver entry whose expected identity the finance sidecar does not have.
      {
        module: 'impostor',
        namespace: 'erp',
        address: { host: '127.0.0.1', port: finance.inboundPort },
        identities: [spiffeId('ledger')],
      },
    ];
    crm = await startSidecar({
      module: 'crm',
      namespace: 'erp',
      trustDomain: 'cluster.local',
      inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
      outbound: { host: '127.0.0.1', port: 0, egressAllowList: [`127.0.0.1:${app.port}`] },
      admin: { host: '127.0.0.1', port: 0 },
      tls: new ValueSource(tlsMaterialOf(crmLeaf, ca)),
      policy: new ValueSource<PolicySnapshot>({ version: 1, policies: [] }),
      resolveDestination: staticDestinationResolver(crmDestinations),
      tokenizeKey: 'crm-tokenize-key-0123456789',
      auditLogPath: crmAuditPath,
      registry: new Registry(),
      logger: silentLogger(),
    });
  });

  afterAll(async () => {
    await finance?.close(1000);
    await crm?.close(1000);
    await app?.close();
    grpcServer?.forceShutdown();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const installPolicies = (version = 1): void =>
    financePolicy.set({ version, policies: POLICIES, revokedIdentities: [spiffeId('revoked-sa')] });

  describe('before the first policy snapshot', () => {
    it('denies every call with 503 NoPolicySnapshot and is not ready', async () => {
      const r = await get(peers.crm!, '/api/v1/customers');
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'NoPolicySnapshot' });
      const ready = await fetch(`http://127.0.0.1:${finance.adminPort}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({
        ready: false,
        checks: { policySnapshot: { ok: false } },
      });
      installPolicies();
      const after = await fetch(`http://127.0.0.1:${finance.adminPort}/readyz`);
      expect(after.status).toBe(200);
    });
  });

  describe('inbound authorization', () => {
    beforeAll(() => installPolicies());

    it('forwards an allowed call with trusted headers and strips spoofed identity headers', async () => {
      const spoofed = [
        'x-erpguard-caller: spiffe://cluster.local/ns/erp/sa/admin',
        'x-erpguard-caller-module: admin',
        'x-erpguard-policy: everything',
        'X-Forwarded-Client-Cert: By=spiffe://x;URI=spiffe://cluster.local/ns/erp/sa/admin',
        'forwarded: for=10.0.0.1;by=admin',
        'x-forwarded-for: 10.0.0.1',
        'x-real-ip: 10.0.0.1',
        'x-remote-user: admin',
        'x-custom: kept',
      ].join('\r\n');
      const r = await get(peers.crm!, '/echo', `${spoofed}\r\n`);
      expect(r.status).toBe(200);
      const seen = JSON.parse(r.body) as { headers: Record<string, string> };
      expect(seen.headers['x-erpguard-caller']).toBe(spiffeId('crm'));
      expect(seen.headers['x-erpguard-caller-module']).toBe('crm');
      expect(seen.headers['x-erpguard-policy']).toBe('erp/crm-echo');
      expect(seen.headers['x-erpguard-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      for (const h of [
        'x-forwarded-client-cert',
        'forwarded',
        'x-forwarded-for',
        'x-real-ip',
        'x-remote-user',
      ]) {
        expect(seen.headers[h]).toBeUndefined();
      }
      expect(seen.headers['x-custom']).toBe('kept');
    });

    it('forwards request bodies (content-length and chunked)', async () => {
      const body = JSON.stringify({ note: 'hello' });
      const r = await rawTlsRequest(
        finance.inboundPort,
        peers.crm!.creds,
        `POST /echo HTTP/1.1\r\nhost: finance\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
      expect(JSON.parse(r.body)).toMatchObject({ method: 'POST', body });
      const chunked = await rawTlsRequest(
        finance.inboundPort,
        peers.crm!.creds,
        `POST /echo HTTP/1.1\r\nhost: finance\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
      );
      expect(JSON.parse(chunked.body)).toMatchObject({ body: 'hello world' });
    });

    it.each([
      ['a method no rule allows', 'DELETE', '/api/v1/customers/1', 'crm', 'NoMatchingRule'],
      ['a path no rule allows', 'GET', '/api/v1/invoices', 'crm', 'NoMatchingRule'],
      ['a caller without any policy', 'GET', '/api/v1/customers', 'hr', 'NoPolicy'],
    ])('denies %s with 403 {code, reason, policy}', async (_name, method, path, who, code) => {
      const r = await rawTlsRequest(
        finance.inboundPort,
        peers[who]!.creds,
        `${method} ${path} HTTP/1.1\r\nhost: finance\r\nconnection: close\r\n\r\n`,
      );
      expect(r.status).toBe(403);
      expect(r.headers['content-type']).toBe('application/json');
      const body = JSON.parse(r.body) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(['code', 'policy', 'reason']);
      expect(body['code']).toBe(code);
      expect(typeof body['reason']).toBe('string');
    });

    it.each([
      ['encoded slash', '/api/v1/customers/%2Fetc', 'InvalidPath'],
      ['encoded slash, lower case', '/api/v1/customers%2f1', 'InvalidPath'],
      ['dot-dot segment', '/api/v1/customers/../../admin', 'InvalidPath'],
      ['dot segment', '/api/v1/./customers', 'InvalidPath'],
      ['double slash', '//api/v1/customers', 'InvalidPath'],
      ['empty segment', '/api/v1//customers', 'InvalidPath'],
      ['trailing slash', '/api/v1/customers/', 'InvalidPath'],
      ['encoded dot segment', '/api/v1/%2e%2e/customers', 'InvalidPath'],
      ['encoded dot in id', '/api/v1/customers/%2E', 'InvalidPath'],
      ['double encoding', '/api/v1/customers/%252F', 'InvalidPath'],
      ['path parameter', '/api/v1/customers;jsessionid=1', 'InvalidPath'],
      ['backslash', '/api/v1/customers\\..\\admin', 'InvalidPath'],
      ['overlong UTF-8 dot', '/api/v1/customers/%C0%AE%C0%AE', 'InvalidPath'],
      ['absolute-form with another host', 'http://admin.internal/api/v1/customers', 'InvalidPath'],
    ])('refuses a path trick through the real socket: %s', async (_name, target, code) => {
      const r = await get(peers.crm!, target);
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ code });
    });

    it('refuses a lower-case method (400 from the parser or 403, never forwarded)', async () => {
      const r = await rawTlsRequest(
        finance.inboundPort,
        peers.crm!.creds,
        'get /api/v1/customers HTTP/1.1\r\nhost: finance\r\nconnection: close\r\n\r\n',
      ).catch(() => ({ status: 400, headers: {}, body: '' }));
      expect([400, 403]).toContain(r.status);
    });

    it('matches percent-encoded unreserved characters as the app decodes them', async () => {
      const r = await get(peers.crm!, '/api/v1/%63ustomers');
      expect(r.status).toBe(200);
    });

    it('rate-limits per caller identity and policy with 429 and Retry-After', async () => {
      const statuses: number[] = [];
      let retryAfter: string | undefined;
      for (let i = 0; i < 3; i++) {
        const r = await get(peers.wms!, '/api/v1/stock');
        statuses.push(r.status);
        if (r.status === 429) {
          retryAfter = r.headers['retry-after'];
          expect(JSON.parse(r.body)).toMatchObject({
            code: 'RateLimited',
            policy: 'erp/wms-reads-stock',
          });
        }
      }
      expect(statuses).toEqual([200, 200, 429]);
      expect(retryAfter).toBe('1');
      // Another caller's budget is its own; a spoofed header changes nothing.
      expect(
        (
          await get(
            peers.wms!,
            '/api/v1/stock',
            'x-erpguard-caller: other\r\nx-forwarded-for: 1.2.3.4\r\n',
          )
        ).status,
      ).toBe(429);
      now.t += 1000;
      expect((await get(peers.wms!, '/api/v1/stock')).status).toBe(200);
    });

    it('lets Audit-mode calls through and records them as would-be denials', async () => {
      const outside = await get(peers.bi!, '/api/v1/payroll');
      expect(outside.status).toBe(200);
      const first = await get(peers.bi!, '/api/v1/reports/q1');
      const overLimit = await get(peers.bi!, '/api/v1/reports/q2');
      expect([first.status, overLimit.status]).toEqual([200, 200]);
      await finance.flushAudit();
      const records = (await readFile(auditPath, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const bi = records.filter((r) => r['callerModule'] === 'bi');
      expect(bi.find((r) => r['path'] === '/api/v1/payroll')).toMatchObject({
        decision: 'audit',
        reason: 'AuditWouldDeny',
        wouldBe: 'NoMatchingRule',
        status: 200,
      });
      expect(bi.find((r) => r['path'] === '/api/v1/reports/q2')).toMatchObject({
        decision: 'audit',
        wouldBe: 'RateLimited',
        policy: 'erp/bi-trial',
      });
    });
  });

  describe('peer certificates', () => {
    beforeAll(() => installPolicies());

    it.each([
      ['no client certificate', () => ({ ca: ca.certPem })],
      ['a certificate from another CA', () => peers.wrongCa!.creds],
      ['an expired certificate', () => peers.expired!.creds],
      ['a certificate that is not yet valid', () => peers.notYetValid!.creds],
    ])('refuses the handshake for %s', async (_name, creds) => {
      await expect(
        rawTlsRequest(finance.inboundPort, creds(), 'GET /echo HTTP/1.1\r\nhost: f\r\n\r\n'),
      ).rejects.toThrow();
    });

    it.each([
      ['two URI SANs', 'twoUris', 'InvalidPeerIdentity'],
      ['no URI SAN', 'noUri', 'InvalidPeerIdentity'],
      ['another trust domain', 'otherDomain', 'InvalidPeerIdentity'],
      ['a URI that is not a SPIFFE ID', 'notSpiffe', 'InvalidPeerIdentity'],
      ['a revoked identity', 'revoked', 'IdentityRevoked'],
    ])('answers 403 for %s', async (_name, who, code) => {
      const r = await get(peers[who]!, '/echo');
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ code });
    });

    it('revocation applies to certificates issued before it only', async () => {
      financePolicy.set({
        version: 2,
        policies: POLICIES,
        revokedIdentities: [
          {
            spiffeId: spiffeId('crm'),
            issuedBefore: new Date(Date.now() - 86_400_000).toISOString(),
          },
        ],
      });
      expect((await get(peers.crm!, '/echo')).status).toBe(200);
      financePolicy.set({ version: 3, policies: POLICIES, revokedIdentities: [spiffeId('crm')] });
      expect(JSON.parse((await get(peers.crm!, '/echo')).body)).toMatchObject({
        code: 'IdentityRevoked',
      });
      installPolicies(4);
      expect((await get(peers.crm!, '/echo')).status).toBe(200);
    });

    it('counts refused handshakes', async () => {
      const text = await (await fetch(`http://127.0.0.1:${finance.adminPort}/metrics`)).text();
      expect(text).toMatch(/erpguard_tls_handshake_failures_total\{reason="\w+"\} [1-9]/);
    });
  });

  describe('data protection', () => {
    beforeAll(() => installPolicies());

    it('masks and tokenizes JSON with a stable token', async () => {
      const a = JSON.parse((await get(peers.crm!, '/api/v1/customers')).body) as typeof CUSTOMERS;
      const b = JSON.parse((await get(peers.crm!, '/api/v1/customers')).body) as typeof CUSTOMERS;
      expect(a.items.map((i) => i.iban)).toEqual(['***', '***']);
      expect(a.items[0]?.email).toMatch(/^tok_[A-Za-z0-9_-]{22}$/);
      expect(a.items[0]?.email).not.toBe(a.items[1]?.email);
      expect(b.items[0]?.email).toBe(a.items[0]?.email);
      expect(a.items[0]?.name).toBe('Acme');
      expect(JSON.stringify(a)).not.toContain('DE8937');
      expect(JSON.stringify(a)).not.toContain('acme.example');
    });

    it('decompresses gzip, masks, and sends the body uncompressed', async () => {
      const r = await get(peers.crm!, '/api/v1/customers/gz', 'accept-encoding: gzip\r\n');
      expect(r.status).toBe(200);
      expect(r.headers['content-encoding']).toBeUndefined();
      const doc = JSON.parse(r.body) as typeof CUSTOMERS;
      expect(doc.items[0]?.iban).toBe('***');
      expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(r.body));
    });

    it('passes an empty (204) response', async () => {
      expect((await get(peers.crm!, '/api/v1/customers/empty')).status).toBe(204);
    });

    it.each([
      [
        'a body over the masking limit (content-length)',
        '/api/v1/customers/big',
        'ResponseTooLarge',
      ],
      [
        'a chunked body over the masking limit',
        '/api/v1/customers/chunked-big',
        'ResponseTooLarge',
      ],
      ['a non-JSON body', '/api/v1/customers/text', 'ResponseNotMaskable'],
      ['unparsable JSON', '/api/v1/customers/broken', 'ResponseNotMaskable'],
      ['an unknown content-encoding', '/api/v1/customers/zstd', 'ResponseNotMaskable'],
    ])('fails closed with 502 for %s', async (_name, path, code) => {
      const r = await get(peers.crm!, path);
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body)).toMatchObject({ code, policy: 'erp/crm-reads-finance' });
      expect(r.body).not.toContain('DE');
    });

    it('audits masked field counts and fail-closed responses', async () => {
      await finance.flushAudit();
      const records = (await readFile(auditPath, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(
        records.filter((r) => r['path'] === '/api/v1/customers' && r['status'] === 200).at(-1),
      ).toMatchObject({ masked: 2, tokenized: 2, decision: 'allow' });
      expect(records.find((r) => r['path'] === '/api/v1/customers/text')).toMatchObject({
        status: 502,
        reason: 'ResponseNotMaskable',
      });
    });
  });

  describe('HTTP/2 and gRPC', () => {
    beforeAll(() => installPolicies());

    const grpcClient = (p: Peer): grpc.Client =>
      new InvoicesClient(
        `127.0.0.1:${finance.inboundPort}`,
        grpc.credentials.createSsl(
          Buffer.from(p.creds.ca),
          Buffer.from(p.creds.key),
          Buffer.from(p.creds.cert),
          { checkServerIdentity: () => undefined },
        ),
      );
    const unary = (
      client: grpc.Client,
      method: string,
      req: unknown,
    ): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) =>
        (
          client as unknown as Record<
            string,
            (
              r: unknown,
              cb: (e: grpc.ServiceError | null, v: Record<string, unknown>) => void,
            ) => void
          >
        )[method]!(req, (e, v) => (e ? reject(e) : resolve(v))),
      );

    it('serves plain HTTP/2 requests (ALPN h2) with masking', async () => {
      const session = h2connect(`https://127.0.0.1:${finance.inboundPort}`, {
        ...peers.crm!.creds,
        checkServerIdentity: () => undefined,
      });
      const body = await new Promise<string>((resolve, reject) => {
        const s = session.request({ ':path': '/api/v1/customers' });
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (c: string) => (text += c));
        s.on('end', () => resolve(text));
        s.on('error', reject);
      });
      session.close();
      expect((JSON.parse(body) as typeof CUSTOMERS).items[0]?.iban).toBe('***');
    });

    it.each([
      [
        'a lower-case method',
        { ':method': 'get', ':path': '/api/v1/customers' },
        403,
        'InvalidMethod',
      ],
      [
        'an encoded slash',
        { ':method': 'GET', ':path': '/api/v1/customers/%2f' },
        403,
        'InvalidPath',
      ],
      [
        'a dot segment',
        { ':method': 'GET', ':path': '/api/v1/x/../customers' },
        403,
        'InvalidPath',
      ],
      [
        'a gRPC call with GET',
        {
          ':method': 'GET',
          ':path': '/erp.finance.v1.Invoices/GetInvoice',
          'content-type': 'application/grpc',
        },
        200,
        undefined,
      ],
    ])('refuses %s over HTTP/2', async (_name, headers, status, code) => {
      const session = h2connect(`https://127.0.0.1:${finance.inboundPort}`, {
        ...peers.crm!.creds,
        checkServerIdentity: () => undefined,
      });
      try {
        const r = await new Promise<{ status: number; grpc: unknown; body: string }>(
          (resolve, reject) => {
            const s = session.request(headers, { endStream: true });
            let text = '';
            let st = 0;
            let grpcStatus: unknown;
            s.setEncoding('utf8');
            s.on('response', (h) => {
              st = Number(h[':status']);
              grpcStatus = h['grpc-status'];
            });
            s.on('data', (c: string) => (text += c));
            s.on('end', () => resolve({ status: st, grpc: grpcStatus, body: text }));
            s.on('error', reject);
          },
        );
        expect(r.status).toBe(status);
        if (code !== undefined) expect(JSON.parse(r.body)).toMatchObject({ code });
        else expect(r.grpc).toBe('3');
      } finally {
        session.close();
      }
    });

    it('passes an allowed unary call and denies another method with PERMISSION_DENIED', async () => {
      const client = grpcClient(peers.crm!);
      try {
        const inv = await unary(client, 'GetInvoice', { id: 'A-1' });
        expect(inv).toMatchObject({ id: 'A-1', caller: spiffeId('crm') });
        await expect(unary(client, 'DeleteInvoice', { id: 'A-1' })).rejects.toMatchObject({
          code: grpc.status.PERMISSION_DENIED,
        });
      } finally {
        client.close();
      }
    });

    it('streams a server-streaming call', async () => {
      const client = grpcClient(peers.crm!);
      try {
        const items: unknown[] = [];
        await new Promise<void>((resolve, reject) => {
          const stream = (
            client as unknown as { ListInvoices(r: unknown): grpc.ClientReadableStream<unknown> }
          ).ListInvoices({ count: 25 });
          stream.on('data', (d) => items.push(d));
          stream.on('end', resolve);
          stream.on('error', reject);
        });
        expect(items).toHaveLength(25);
      } finally {
        client.close();
      }
    });

    it('denies gRPC for a caller without a policy', async () => {
      const client = grpcClient(peers.hr!);
      try {
        await expect(unary(client, 'GetInvoice', { id: 'A-1' })).rejects.toMatchObject({
          code: grpc.status.PERMISSION_DENIED,
        });
      } finally {
        client.close();
      }
    });
  });

  describe('outbound proxy (app → crm outbound → mTLS → finance inbound → app)', () => {
    beforeAll(() => installPolicies());

    const viaProxy = (
      path: string,
      host?: string,
      method = 'GET',
    ): Promise<{ status: number; body: string; headers: Record<string, unknown> }> =>
      new Promise((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: crm.outboundPort,
            method,
            path,
            headers: host === undefined ? {} : { host },
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body, headers: res.headers }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });

    it('forwards absolute-form requests with crm’s identity', async () => {
      const r = await viaProxy('http://finance.erp.svc:8080/echo', 'finance.erp.svc:8080');
      expect(r.status).toBe(200);
      const seen = JSON.parse(r.body) as { headers: Record<string, string> };
      expect(seen.headers['x-erpguard-caller']).toBe(spiffeId('crm'));
      expect(seen.headers['host']).toBe('finance.erp.svc:8080');
    });

    it('forwards origin-form requests naming the module in Host, and the response is masked', async () => {
      const r = await viaProxy('/api/v1/customers', 'finance');
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body) as typeof CUSTOMERS).items[0]?.iban).toBe('***');
    });

    it('passes the destination’s denial through', async () => {
      const r = await viaProxy('http://finance.erp.svc/api/v1/../admin');
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'InvalidPath' });
    });

    it('refuses hosts that are not modules, unless allow-listed', async () => {
      const r = await viaProxy('http://metadata.google.internal/computeMetadata/v1/');
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'DestinationNotAllowed' });
      const egress = await viaProxy(`http://127.0.0.1:${app.port}/echo`);
      expect(egress.status).toBe(200);
      expect(
        (JSON.parse(egress.body) as { headers: Record<string, string> }).headers[
          'x-erpguard-caller'
        ],
      ).toBeUndefined();
    });

    it('refuses CONNECT to a module and to unlisted hosts', async () => {
      for (const target of ['finance.erp.svc:443', 'example.com:443']) {
        const status = await new Promise<number>((resolve, reject) => {
          const req = httpRequest({
            host: '127.0.0.1',
            port: crm.outboundPort,
            method: 'CONNECT',
            path: target,
          });
          req.on('connect', (res, socket) => {
            socket.destroy();
            resolve(res.statusCode ?? 0);
          });
          req.on('response', (res) => resolve(res.statusCode ?? 0));
          req.on('error', reject);
          req.end();
        });
        expect(status).toBe(403);
      }
    });

    it('refuses a destination presenting an identity its module may not have (502)', async () => {
      const r = await viaProxy('/echo', 'impostor.erp.svc');
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'UpstreamIdentityMismatch' });
    });

    it('forwards gRPC over cleartext h2 to the outbound port', async () => {
      const client = new InvoicesClient(
        `127.0.0.1:${crm.outboundPort}`,
        grpc.credentials.createInsecure(),
        {
          'grpc.default_authority': 'finance.erp.svc:9090',
          'grpc.enable_http_proxy': 0,
        },
      );
      try {
        const inv = await new Promise<Record<string, unknown>>((resolve, reject) =>
          (
            client as unknown as {
              GetInvoice(
                r: unknown,
                cb: (e: grpc.ServiceError | null, v: Record<string, unknown>) => void,
              ): void;
            }
          ).GetInvoice({ id: 'B-2' }, (e, v) => (e ? reject(e) : resolve(v))),
        );
        expect(inv).toMatchObject({ id: 'B-2', caller: spiffeId('crm') });
        const denied = await new Promise<grpc.ServiceError | null>((resolve) =>
          (
            client as unknown as {
              DeleteInvoice(r: unknown, cb: (e: grpc.ServiceError | null) => void): void;
            }
          ).DeleteInvoice({ id: 'B-2' }, (e) => resolve(e)),
        );
        expect(denied?.code).toBe(grpc.status.PERMISSION_DENIED);
        const items: unknown[] = [];
        await new Promise<void>((resolve, reject) => {
          const s = (
            client as unknown as { ListInvoices(r: unknown): grpc.ClientReadableStream<unknown> }
          ).ListInvoices({ count: 10 });
          s.on('data', (d) => items.push(d));
          s.on('end', resolve);
          s.on('error', reject);
        });
        expect(items).toHaveLength(10);
      } finally {
        client.close();
      }
    });

    it('audits outbound calls', async () => {
      await crm.flushAudit();
      const records = (await readFile(crmAuditPath, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.every((r) => r['direction'] === 'outbound')).toBe(true);
      expect(records.find((r) => r['reason'] === 'DestinationNotAllowed')).toMatchObject({
        decision: 'deny',
        status: 403,
      });
      expect(
        records.find((r) => r['reason'] === 'Forwarded' && r['protocol'] === 'grpc'),
      ).toMatchObject({ destination: 'finance', caller: spiffeId('crm') });
    });
  });

  describe('certificate rotation and policy updates under traffic', () => {
    beforeAll(() => installPolicies());

    const serverCertOf = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect(
          {
            host: '127.0.0.1',
            port: finance.inboundPort,
            ...peers.crm!.creds,
            checkServerIdentity: () => undefined,
          },
          () => {
            resolve(s.getPeerX509Certificate()?.fingerprint256 ?? '');
            s.destroy();
          },
        );
        s.on('error', reject);
      });

    it('keeps an open keep-alive connection working across a rotation; new connections get the new certificate', async () => {
      const client = new Client(`https://127.0.0.1:${finance.inboundPort}`, {
        connect: { ...peers.crm!.creds, checkServerIdentity: () => undefined },
        pipelining: 1,
      });
      let connects = 0;
      client.on('connect', () => (connects += 1));
      try {
        const before = await serverCertOf();
        expect((await client.request({ path: '/echo', method: 'GET' })).statusCode).toBe(200);
        const rotated = issueLeaf(ca, { uris: [spiffeId('finance')] });
        financeTls.set(tlsMaterialOf(rotated, ca));
        const res = await client.request({ path: '/api/v1/customers', method: 'GET' });
        expect(res.statusCode).toBe(200);
        expect((JSON.parse(await res.body.text()) as typeof CUSTOMERS).items[0]?.iban).toBe('***');
        expect(connects).toBe(1);
        const after = await serverCertOf();
        expect(after).not.toBe(before);
        expect(after).toBe(
          new (await import('node:crypto')).X509Certificate(rotated.certPem).fingerprint256,
        );
      } finally {
        await client.close();
      }
    });

    it('accepts callers of a new root once the bundle holds both roots (CA rotation)', async () => {
      const newRoot = createTestCa('erpguard next root');
      const crmNew = peer(issueLeaf(newRoot, { uris: [spiffeId('crm')] }), ca);
      await expect(get(crmNew, '/echo')).rejects.toThrow();
      financeTls.set({ ...financeTls.current()!, trustBundle: [ca.certPem, newRoot.certPem] });
      expect((await get(crmNew, '/echo')).status).toBe(200);
      expect((await get(peers.crm!, '/echo')).status).toBe(200);
    });

    it('no request fails while policies and certificates change during slow in-flight calls', async () => {
      const client = new Pool(`https://127.0.0.1:${finance.inboundPort}`, {
        connect: { ...peers.crm!.creds, checkServerIdentity: () => undefined },
        pipelining: 1,
        connections: 4,
      });
      try {
        const calls = Array.from({ length: 8 }, () =>
          client
            .request({ path: '/slow', method: 'GET' })
            .then(async (r) => ({ status: r.statusCode, body: await r.body.text() })),
        );
        installPolicies(10);
        financeTls.set(tlsMaterialOf(issueLeaf(ca, { uris: [spiffeId('finance')] }), ca));
        installPolicies(11);
        const results = await Promise.all(calls);
        expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
      } finally {
        await client.close();
      }
    });
  });

  describe('audit log', () => {
    it('verifies the hash chain and detects tampering', async () => {
      await finance.flushAudit();
      const ok = await verifyAuditChain(auditPath);
      expect(ok.ok).toBe(true);
      expect(ok.startsAtGenesis).toBe(true);
      expect(ok.records).toBeGreaterThan(20);
      const lines = (await readFile(auditPath, 'utf8')).split('\n');
      const tamperedPath = join(dir, 'tampered.log');
      const victim = 5;
      lines[victim] =
        lines[victim]!.replace(/"status":\d+/, '"status":200').replace(
          /"decision":"\w+"/,
          '"decision":"allow"',
        ) + ' ';
      await writeFile(tamperedPath, lines.join('\n'));
      const bad = await verifyAuditChain(tamperedPath);
      expect(bad.ok).toBe(false);
      expect(bad.firstBreak).toMatchObject({ line: victim + 2, reason: 'HashMismatch' });
      const deleted = (await readFile(auditPath, 'utf8')).split('\n');
      deleted.splice(3, 1);
      await writeFile(tamperedPath, deleted.join('\n'));
      expect((await verifyAuditChain(tamperedPath)).firstBreak).toMatchObject({
        line: 4,
        reason: 'HashMismatch',
      });
    });

    it('exports the metrics the issue names', async () => {
      const text = await (await fetch(`http://127.0.0.1:${finance.adminPort}/metrics`)).text();
      for (const name of [
        'erpguard_requests_total{direction="inbound",decision="allow",destination="finance",source="crm"}',
        'erpguard_request_duration_seconds_bucket',
        'erpguard_authz_denied_total{direction="inbound",reason="InvalidPath"}',
        'erpguard_ratelimited_total',
        'erpguard_masked_fields_total',
        'erpguard_policy_snapshot_version 11',
        'erpguard_cert_expiration_timestamp_seconds',
      ]) {
        expect(text).toContain(name);
      }
      expect(text).not.toContain('/api/v1');
    });
  });

  describe('app unavailable', () => {
    it('answers 503 UpstreamUnavailable (audited) instead of hanging', async () => {
      const reg = new Registry();
      const dead = await startSidecar({
        module: 'finance',
        namespace: 'erp',
        trustDomain: 'cluster.local',
        inbound: { host: '127.0.0.1', port: 0, appPort: 1 },
        outbound: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        tls: financeTls,
        policy: new ValueSource<PolicySnapshot>({ version: 1, policies: POLICIES }),
        resolveDestination: () => undefined,
        tokenizeKey: 'test-tokenize-key-0123456789',
        auditLogPath: join(dir, 'dead', 'audit.log'),
        registry: reg,
        logger: silentLogger(),
      });
      try {
        const r = await rawTlsRequest(
          dead.inboundPort,
          peers.crm!.creds,
          'GET /echo HTTP/1.1\r\nhost: f\r\nconnection: close\r\n\r\n',
        );
        expect(r.status).toBe(503);
        expect(JSON.parse(r.body)).toMatchObject({ code: 'UpstreamUnavailable' });
        await dead.flushAudit();
        const rec = JSON.parse(
          (await readFile(join(dir, 'dead', 'audit.log'), 'utf8')).trim(),
        ) as Record<string, unknown>;
        expect(rec).toMatchObject({
          status: 503,
          reason: 'UpstreamUnavailable',
          decision: 'allow',
        });
      } finally {
        await dead.close(100);
      }
    });
  });
});
