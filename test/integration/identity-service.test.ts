/**
 * The identity server over real gRPC + TLS on loopback: certificate issuance and its refusals,
 * mTLS renewal, policy streams, revocation. Issued certificates are checked with the openssl CLI.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as grpc from '@grpc/grpc-js';

import { API_VERSION, KIND, type ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import {
  MemoryCaKeyStore,
  buildCsr,
  createCertificateAuthority,
  generateKeysSync,
  type CertificateAuthority,
} from '../../pkg/ca/index.js';
import {
  AdminClient,
  PolicyIndex,
  StaticTokenAuthenticator,
  startIdentityServer,
  type IdentityServer,
  type IdentityServerOptions,
} from '../../pkg/identity/index.js';
import { methods, unary, type SignCertificateResponse } from '../../pkg/proto/erpguard-proto.js';
import { createLogger, createMetricsRegistry, type Registry } from '../../pkg/telemetry/index.js';
import {
  PolicyWatchClient,
  WorkloadIdentityClient,
  channelCredentials,
  watchCredentialsFrom,
  type PolicySnapshotView,
} from '../../pkg/workload-identity/index.js';

const dir = mkdtempSync(join(tmpdir(), 'erpguard-identity-it-'));
let fileCounter = 0;
function tmpFile(content: string): string {
  const path = join(dir, `f-${fileCounter++}.pem`);
  writeFileSync(path, content);
  return path;
}

const TD = 'cluster.local';
const ID = (sa: string, ns = 'erp'): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const TOKENS = [
  { token: 'finance-token', namespace: 'erp', serviceAccount: 'finance', module: 'finance' },
  { token: 'crm-token', namespace: 'erp', serviceAccount: 'crm', module: 'crm' },
  { token: 'nomodule-token', namespace: 'erp', serviceAccount: 'batch' },
  { token: 'admin-token', namespace: 'erpguard', serviceAccount: 'erpguard-admin' },
  {
    token: 'expired-token',
    namespace: 'erp',
    serviceAccount: 'crm',
    expiresAt: '2020-01-01T00:00:00Z',
  },
  {
    token: 'k8s-audience-token',
    namespace: 'erp',
    serviceAccount: 'crm',
    audiences: ['https://kubernetes.default.svc'],
  },
];

function policy(
  name: string,
  source: string,
  destination: string,
  extra: Partial<ErpIntegrationPolicy['spec']> = {},
): ErpIntegrationPolicy {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: 'erp', generation: 1 },
    spec: {
      source: { module: source },
      destination: { module: destination },
      rules: [{ methods: ['GET'], paths: ['/api/v1/customers'] }],
      rateLimit: { requestsPerSecond: 5 },
      ...extra,
    },
  };
}

interface Stack {
  ca: CertificateAuthority;
  index: PolicyIndex;
  server: IdentityServer;
  registry: Registry;
  logs: Record<string, unknown>[];
  target: string;
  bundle: string;
}

async function startStack(overrides: Partial<IdentityServerOptions> = {}): Promise<Stack> {
  const ca = await createCertificateAuthority({ store: new MemoryCaKeyStore(), minTtlSeconds: 1 });
  const authenticator = new StaticTokenAuthenticator(TOKENS);
  const index = new PolicyIndex({ trustDomain: TD });
  index.setIdentityBindings(authenticator.bindings());
  const registry = createMetricsRegistry();
  const logs: Record<string, unknown>[] = [];
  const server = await startIdentityServer({
    ca,
    authenticator,
    policyIndex: index,
    registry,
    logger: createLogger('identity-server', {
      level: 'debug',
      sink: (line) => logs.push(JSON.parse(line) as Record<string, unknown>),
    }),
    listen: { host: '127.0.0.1', port: 0 },
    adminIdentities: [ID('erpguard-admin', 'erpguard')],
    ...overrides,
  });
  return {
    ca,
    index,
    server,
    registry,
    logs,
    target: `127.0.0.1:${server.port}`,
    bundle: ca.trustBundlePem(),
  };
}

interface CallOutcome {
  response?: SignCertificateResponse;
  code?: grpc.status;
  details?: string;
  reason?: string;
}

async function sign(
  stack: Stack,
  csr: string,
  auth: {
    token?: string;
    authorization?: string;
    client?: { keyPem: string; certificateChainPem: string };
  },
  ttlSeconds = 0,
): Promise<CallOutcome> {
  const metadata = new grpc.Metadata();
  if (auth.token !== undefined) metadata.set('authorization', `Bearer ${auth.token}`);
  if (auth.authorization !== undefined) metadata.set('authorization', auth.authorization);
  const client = new grpc.Client(
    stack.target,
    channelCredentials({ target: stack.target }, stack.bundle, auth.client),
  );
  try {
    const response = await unary(client, methods.signCertificate, { csr, ttlSeconds }, metadata, {
      deadline: Date.now() + 10_000,
    });
    return { response };
  } catch (error) {
    const e = error as grpc.ServiceError;
    return {
      code: e.code,
      details: e.details,
      reason: String(e.metadata?.get('erpguard-reason')[0] ?? ''),
    };
  } finally {
    client.close();
  }
}

function ecCsr(options: Parameters<typeof buildCsr>[1] = {}): { csr: string; keyPem: string } {
  const keys = generateKeysSync('ec-p256');
  return {
    csr: buildCsr(keys.privateKey, options),
    keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

async function until<T>(
  what: string,
  probe: () => T | undefined | null | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Identity.SignCertificate', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack.server.close();
  });

  it('issues a certificate that openssl verifies, with the caller identity, EKU and validity window', async () => {
    const { csr } = ecCsr();
    const before = Date.now();
    const { response } = await sign(stack, csr, { token: 'finance-token' }, 1800);
    if (response === undefined) throw new Error('no certificate');
    expect(response.spiffeId).toBe(ID('finance'));
    const verify = execFileSync(
      'openssl',
      ['verify', '-CAfile', tmpFile(response.trustBundle), tmpFile(response.certificateChain)],
      { encoding: 'utf8' },
    );
    expect(verify).toContain(': OK');
    const text = execFileSync(
      'openssl',
      ['x509', '-in', tmpFile(response.certificateChain), '-text', '-noout'],
      { encoding: 'utf8' },
    );
    expect(text.match(/URI:/g)).toHaveLength(1);
    expect(text).toContain(`URI:${ID('finance')}`);
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    expect(text).toMatch(/CA:FALSE/);
    const x509 = new X509Certificate(response.certificateChain);
    const notBefore = new Date(x509.validFrom).getTime();
    const notAfter = new Date(x509.validTo).getTime();
    // Back-dated ~60 s for clock skew; lifetime as requested. (Whole seconds in X.509.)
    expect(notBefore).toBeLessThanOrEqual(before - 59_000);
    expect(notBefore).toBeGreaterThan(before - 62_000);
    expect(notAfter - notBefore).toBe((1800 + 60) * 1000);
    expect(response.notAfterUnixMs).toBe(notAfter);
  });

  it.each<
    [string, () => { csr: string }, { token?: string; authorization?: string }, grpc.status, string]
  >([
    [
      'a forged CSR claiming another identity',
      () => ecCsr({ uris: [ID('payroll')] }),
      { token: 'finance-token' },
      grpc.status.INVALID_ARGUMENT,
      'CsrIdentityMismatch',
    ],
    [
      'a CSR asking for DNS names',
      () => ecCsr({ dnsNames: ['finance.erp.svc'] }),
      { token: 'finance-token' },
      grpc.status.INVALID_ARGUMENT,
      'CsrUnsupportedSan',
    ],
    [
      'an unknown (garbage) token',
      () => ecCsr(),
      { token: 'garbage' },
      grpc.status.UNAUTHENTICATED,
      'TokenInvalid',
    ],
    [
      'an expired token',
      () => ecCsr(),
      { token: 'expired-token' },
      grpc.status.UNAUTHENTICATED,
      'TokenRejected',
    ],
    [
      'a token for another audience',
      () => ecCsr(),
      { token: 'k8s-audience-token' },
      grpc.status.UNAUTHENTICATED,
      'TokenRejected',
    ],
    [
      'a non-bearer authorization',
      () => ecCsr(),
      { authorization: 'Basic Zm9vOmJhcg==' },
      grpc.status.UNAUTHENTICATED,
      'MalformedAuthorization',
    ],
    ['no credentials at all', () => ecCsr(), {}, grpc.status.UNAUTHENTICATED, 'NoCredentials'],
    [
      'a 1024-bit RSA key',
      () => ({ csr: buildCsr(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey) }),
      { token: 'finance-token' },
      grpc.status.INVALID_ARGUMENT,
      'CsrWeakKey',
    ],
    [
      'a CSR with a bad signature',
      () => {
        const { csr } = ecCsr();
        const body = csr.split('\n').slice(1, -2).join('');
        const der = Buffer.from(body, 'base64');
        der[der.length - 3] = (der[der.length - 3] ?? 0) ^ 0xff;
        return {
          csr: `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
        };
      },
      { token: 'finance-token' },
      grpc.status.INVALID_ARGUMENT,
      'CsrSignatureInvalid',
    ],
    [
      'an oversized CSR',
      () => ({ csr: 'A'.repeat(9000) }),
      { token: 'finance-token' },
      grpc.status.INVALID_ARGUMENT,
      'InputTooLarge',
    ],
  ])('refuses %s', async (_name, make, auth, code, reason) => {
    const outcome = await sign(stack, make().csr, auth);
    expect(outcome.response).toBeUndefined();
    expect([outcome.code, outcome.reason]).toEqual([code, reason]);
    expect((outcome.details ?? '').length).toBeLessThan(200);
  });

  it('tells the client little about a refused token but logs the full reason', async () => {
    const outcome = await sign(stack, ecCsr().csr, { token: 'expired-token' });
    expect(outcome.details).toBe('Unauthenticated: credentials not accepted');
    expect(stack.logs).toContainEqual(
      expect.objectContaining({
        msg: 'request refused',
        reason: 'TokenRejected',
        message: 'token expired',
      }),
    );
  });

  it('renews over mTLS with the current certificate and no token', async () => {
    const first = ecCsr();
    const issued = await sign(stack, first.csr, { token: 'crm-token' });
    const chain = issued.response?.certificateChain ?? '';
    const renewed = await sign(stack, ecCsr().csr, {
      client: { keyPem: first.keyPem, certificateChainPem: chain },
    });
    expect(renewed.response?.spiffeId).toBe(ID('crm'));
    expect(new X509Certificate(renewed.response?.certificateChain ?? '').serialNumber).not.toBe(
      new X509Certificate(chain).serialNumber,
    );
  });

  it('does not accept a client certificate from another CA claiming a SPIFFE ID', async () => {
    const rogueCa = await createCertificateAuthority({ store: new MemoryCaKeyStore() });
    const rogue = ecCsr();
    const rogueCert = rogueCa.sign({
      csrPem: rogue.csr,
      identity: { namespace: 'erp', serviceAccount: 'finance' },
    });
    const outcome = await sign(stack, ecCsr().csr, {
      client: { keyPem: rogue.keyPem, certificateChainPem: rogueCert.certificateChainPem },
    });
    expect([outcome.code, outcome.reason]).toEqual([grpc.status.UNAUTHENTICATED, 'NoCredentials']);
  });

  it('issues for the shortest certificateTTL of the policies naming the module', async () => {
    stack.index.applyPolicies([
      policy('crm-to-finance', 'crm', 'finance', { certificateTTL: '20m' }),
    ]);
    try {
      const { response } = await sign(stack, ecCsr().csr, { token: 'finance-token' });
      const x509 = new X509Certificate(response?.certificateChain ?? '');
      expect(new Date(x509.validTo).getTime() - new Date(x509.validFrom).getTime()).toBe(
        (20 * 60 + 60) * 1000,
      );
    } finally {
      stack.index.applyPolicies([]);
    }
  });

  it('exports issuance metrics', async () => {
    const text = await stack.registry.metrics();
    expect(text).toMatch(
      /erpguard_certificates_issued_total\{result="issued",reason="Issued"\} [1-9]/,
    );
    expect(text).toMatch(
      /erpguard_certificates_issued_total\{result="refused",reason="CsrIdentityMismatch"\} 1/,
    );
    expect(text).toMatch(/erpguard_certificate_sign_duration_seconds_count [1-9]/);
    expect(text).toMatch(/erpguard_ca_issuer_expiration_timestamp_seconds \d+/);
  });

  it('verifies the server by its SPIFFE ID when asked to, and refuses a wrong one', async () => {
    const server = await startStack({
      serving: { identity: { namespace: 'erpguard', serviceAccount: 'erpguard-controller' } },
    });
    try {
      const client = (expected: string): WorkloadIdentityClient =>
        new WorkloadIdentityClient({
          target: server.target,
          trustBundlePem: server.bundle,
          token: () => 'finance-token',
          serverSpiffeId: expected,
          backoff: { initialMs: 10, maxMs: 20 },
        });
      const good = client(ID('erpguard-controller', 'erpguard'));
      await expect(good.renewNow()).resolves.toMatchObject({ spiffeId: ID('finance') });
      good.stop();
      const bad = client(ID('someone-else', 'erpguard'));
      await expect(bad.renewNow()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      bad.stop();
    } finally {
      await server.server.close();
    }
  });
});

describe('rate limits', () => {
  it('limits signing per identity with RESOURCE_EXHAUSTED', async () => {
    const stack = await startStack({ limits: { signBurst: 3, signPerSecond: 0.001 } });
    try {
      const outcomes = [];
      for (let i = 0; i < 4; i++)
        outcomes.push(await sign(stack, ecCsr().csr, { token: 'finance-token' }));
      expect(outcomes.map((o) => o.code ?? 'ok')).toEqual([
        'ok',
        'ok',
        'ok',
        grpc.status.RESOURCE_EXHAUSTED,
      ]);
      expect(outcomes[3]?.reason).toBe('RateLimited');
      // Another identity still gets its certificate.
      expect((await sign(stack, ecCsr().csr, { token: 'crm-token' })).response).toBeDefined();
    } finally {
      await stack.server.close();
    }
  });
});

describe('Policy.Watch and revocation', () => {
  let stack: Stack;
  let financeIdentity: WorkloadIdentityClient;
  let watch: PolicyWatchClient;
  const received: PolicySnapshotView[] = [];

  beforeAll(async () => {
    stack = await startStack();
    financeIdentity = new WorkloadIdentityClient({
      target: stack.target,
      trustBundlePem: stack.bundle,
      token: () => 'finance-token',
    });
    await financeIdentity.start();
    watch = new PolicyWatchClient({
      target: stack.target,
      credentials: watchCredentialsFrom(financeIdentity),
      backoff: { initialMs: 50, maxMs: 200 },
    });
    watch.onSnapshot((s) => received.push(s));
    watch.start();
    await watch.ready();
  });
  afterAll(async () => {
    watch.stop();
    financeIdentity.stop();
    await stack.server.close();
  });

  it('starts with the current snapshot of the caller module, authenticated by mTLS', () => {
    const first = received[0];
    expect(first?.module).toBe('finance');
    expect(first?.namespace).toBe('erp');
    expect(first?.policies).toEqual([]);
    expect(first?.trustBundlePem).toBe(stack.ca.trustBundlePem());
  });

  it('pushes a policy change to the destination module only', async () => {
    const count = received.length;
    stack.index.applyPolicies([policy('finance-to-crm', 'finance', 'crm')]); // crm's business
    stack.index.applyPolicies([
      policy('finance-to-crm', 'finance', 'crm'),
      policy('crm-reads-customers', 'crm', 'finance'),
    ]);
    const latest = await until('the finance policy', () =>
      received.find((s) => s.policies.length > 0),
    );
    expect(latest.policies.map((p) => p.metadata.name)).toEqual(['crm-reads-customers']);
    expect(latest.identityBindings.get(ID('crm'))).toBe('crm');
    // The crm-only change produced no snapshot for finance: exactly one new one arrived.
    expect(received.length).toBe(count + 1);
    expect(latest.version).toBeGreaterThan(received[count - 1]?.version ?? 0);
  });

  it('lets a workload watch only its own module', async () => {
    const crm = new PolicyWatchClient({
      target: stack.target,
      module: 'finance',
      credentials: () => ({ trustBundlePem: stack.bundle, token: 'crm-token' }),
      backoff: { initialMs: 5_000, maxMs: 5_000 },
      logger: createLogger('watch', { level: 'warn', sink: () => undefined }),
    });
    crm.start();
    await until('the refusal', () => stack.logs.find((l) => l['reason'] === 'ModuleMismatch'));
    crm.stop();
    expect(crm.current()).toBeNull();

    const batch = new PolicyWatchClient({
      target: stack.target,
      credentials: () => ({ trustBundlePem: stack.bundle, token: 'nomodule-token' }),
      backoff: { initialMs: 5_000, maxMs: 5_000 },
    });
    batch.start();
    await until('the refusal', () => stack.logs.find((l) => l['reason'] === 'ModuleUnbound'));
    batch.stop();
  });

  it('delivers a revocation to the watching client and refuses the revoked identity', async () => {
    const admin = new AdminClient({
      target: stack.target,
      trustBundlePem: stack.bundle,
      token: 'admin-token',
    });
    const notAdmin = new AdminClient({
      target: stack.target,
      trustBundlePem: stack.bundle,
      token: 'crm-token',
    });
    try {
      await expect(notAdmin.revoke(ID('crm'))).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
      await expect(admin.revoke('spiffe://other.domain/ns/erp/sa/crm')).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
      });

      const revocation = await admin.revoke(ID('crm'), { reason: 'bulk export anomaly' });
      // Default: until every certificate issued so far has expired (max TTL + back-dating).
      expect(revocation.until.getTime()).toBeGreaterThan(Date.now() + 24 * 3600_000);
      const snapshot = await until('the revocation', () =>
        watch.current()?.revokedIdentities.find((r) => r.spiffeId === ID('crm')),
      );
      expect(snapshot.reason).toBe('bulk export anomaly');
      expect((await admin.list()).map((r) => r.spiffeId)).toEqual([ID('crm')]);

      const outcome = await sign(stack, ecCsr().csr, { token: 'crm-token' });
      expect([outcome.code, outcome.reason]).toEqual([
        grpc.status.PERMISSION_DENIED,
        'IdentityRevoked',
      ]);

      expect(await admin.unrevoke(ID('crm'))).toBe(true);
      await until('the lifted revocation', () => watch.current()?.revokedIdentities.length === 0);
      expect((await sign(stack, ecCsr().csr, { token: 'crm-token' })).response).toBeDefined();
    } finally {
      admin.close();
      notAdmin.close();
    }
  });

  it('ends the policy stream of an identity when it is revoked', async () => {
    const crmIdentity = new WorkloadIdentityClient({
      target: stack.target,
      trustBundlePem: stack.bundle,
      token: () => 'crm-token',
    });
    await crmIdentity.start();
    const crmWatch = new PolicyWatchClient({
      target: stack.target,
      credentials: watchCredentialsFrom(crmIdentity),
      backoff: { initialMs: 10_000, maxMs: 10_000 },
    });
    crmWatch.start();
    await crmWatch.ready();
    expect(crmWatch.connected).toBe(true);
    stack.index.revoke(ID('crm'), new Date(Date.now() + 60_000), 'test');
    await until('the stream to end', () => !crmWatch.connected);
    expect(crmWatch.current()?.module).toBe('crm'); // the last good snapshot is kept
    stack.index.unrevoke(ID('crm'));
    crmWatch.stop();
    crmIdentity.stop();
  });

  it('keeps the last snapshot while the server is away and resumes with the current one', async () => {
    const port = stack.server.port;
    await until('a settled snapshot', () => watch.current()?.revokedIdentities.length === 0);
    const held = watch.current();
    await stack.server.close();
    await until('the disconnect', () => !watch.connected);
    expect(watch.current()).toBe(held);

    // Change the state while the client is disconnected, then bring a server back on the port.
    stack.index.applyPolicies([policy('bi-reads-ledger', 'bi', 'finance')]);
    stack.server = await startIdentityServer({
      ca: stack.ca,
      authenticator: new StaticTokenAuthenticator(TOKENS),
      policyIndex: stack.index,
      listen: { host: '127.0.0.1', port },
    });
    const resumed = await until('the resumed snapshot', () =>
      watch.current()?.policies.find((p) => p.metadata.name === 'bi-reads-ledger'),
    );
    expect(resumed.spec.source.module).toBe('bi');
    expect(watch.connected).toBe(true);
  });

  it('exports stream metrics', async () => {
    const text = await stack.registry.metrics();
    expect(text).toMatch(/erpguard_policy_snapshot_pushes_total [1-9]/);
    expect(text).toMatch(/erpguard_policy_snapshot_version [1-9]/);
    expect(text).toMatch(/erpguard_policy_streams_active \d/);
  });
});
