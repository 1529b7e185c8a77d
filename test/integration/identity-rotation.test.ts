/**
 * Certificates changing under live traffic, over real TLS on loopback: renewal while
 * connections are open, renewal failure, a full root rotation with requests running throughout,
 * and clock-skew back-dating at the handshake.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

import { afterAll, describe, expect, it } from '@jest/globals';

import {
  MemoryCaKeyStore,
  buildCsr,
  createCertificateAuthority,
  decodeCertificates,
  fingerprintOf,
  generateKeysSync,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
} from '../../pkg/ca/index.js';
import {
  PolicyIndex,
  StaticTokenAuthenticator,
  startIdentityServer,
  type IdentityServer,
} from '../../pkg/identity/index.js';
import { createLogger } from '../../pkg/telemetry/index.js';
import {
  PolicyWatchClient,
  WorkloadIdentityClient,
  checkPeerSpiffeId,
  secureContextOptions,
  spiffeIdOfCertificate,
  watchCredentialsFrom,
  type WorkloadMaterial,
} from '../../pkg/workload-identity/index.js';

const ID = (sa: string): string => `spiffe://cluster.local/ns/erp/sa/${sa}`;
const TOKENS = [
  { token: 'finance-token', namespace: 'erp', serviceAccount: 'finance', module: 'finance' },
  { token: 'crm-token', namespace: 'erp', serviceAccount: 'crm', module: 'crm' },
];

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function until<T>(
  what: string,
  probe: () => T | undefined | null | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Stack {
  ca: CertificateAuthority;
  index: PolicyIndex;
  server: IdentityServer;
  target: string;
}

async function startStack(
  caOptions: Partial<CertificateAuthorityOptions> = {},
  servingTtl = 3600,
): Promise<Stack> {
  const ca = await createCertificateAuthority({
    store: new MemoryCaKeyStore(),
    minTtlSeconds: 1,
    ...caOptions,
  });
  const authenticator = new StaticTokenAuthenticator(TOKENS);
  const index = new PolicyIndex();
  index.setIdentityBindings(authenticator.bindings());
  const server = await startIdentityServer({
    ca,
    authenticator,
    policyIndex: index,
    listen: { host: '127.0.0.1', port: 0 },
    serving: { ttlSeconds: servingTtl },
  });
  const stack = { ca, index, server, target: `127.0.0.1:${server.port}` };
  cleanups.push(() => stack.server.close());
  return stack;
}

function workload(
  stack: Stack,
  token: string,
  ttlSeconds: number,
  extra: Partial<ConstructorParameters<typeof WorkloadIdentityClient>[0]> = {},
): WorkloadIdentityClient {
  const client = new WorkloadIdentityClient({
    target: stack.target,
    trustBundlePem: stack.ca.trustBundlePem(),
    token: () => token,
    ttlSeconds,
    backoff: { initialMs: 50, maxMs: 200 },
    ...extra,
  });
  cleanups.push(() => client.stop());
  return client;
}

/** An mTLS HTTPS server that swaps its certificate on every change, like the sidecar does. */
async function startWorkloadServer(
  identity: WorkloadIdentityClient,
): Promise<{ server: https.Server; port: number }> {
  const material = identity.current();
  if (material === null) throw new Error('no material');
  const server = https.createServer(
    { ...secureContextOptions(material), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.end(spiffeIdOfCertificate(peer) ?? 'unknown');
    },
  );
  server.keepAliveTimeout = 60_000;
  identity.onChange((m) => {
    if (m !== null) server.setSecureContext(secureContextOptions(m));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port };
}

interface Reply {
  body: string;
  serverSerial: string;
  reused: boolean;
  socket: TLSSocket;
}

function get(
  port: number,
  options: { agent?: https.Agent; material?: WorkloadMaterial; expect?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const tlsOptions =
      options.agent !== undefined
        ? { agent: options.agent }
        : {
            agent: false as const,
            ...secureContextOptions(options.material as WorkloadMaterial),
            checkServerIdentity: checkPeerSpiffeId(
              (id) => id === (options.expect ?? ID('finance')),
            ),
          };
    const req = https.request({ host: '127.0.0.1', port, path: '/', ...tlsOptions }, (res) => {
      // Read the socket now: a keep-alive socket goes back to the pool at 'end'.
      const socket = res.socket as TLSSocket;
      const serverSerial = socket.getPeerCertificate().serialNumber;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ body, serverSerial, reused: req.reusedSocket, socket }));
    });
    req.setTimeout(5_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

function keepAliveAgent(material: WorkloadMaterial): https.Agent {
  return new https.Agent({
    keepAlive: true,
    maxSockets: 1,
    ...secureContextOptions(material),
    checkServerIdentity: checkPeerSpiffeId((id) => id === ID('finance')),
  });
}

function serialOf(material: WorkloadMaterial | null): string {
  return new X509Certificate(material?.certificateChainPem ?? '').serialNumber;
}

describe('renewal under a live TLS server', () => {
  it('renews at about half-life; open connections survive the swap and new ones get the new certificate', async () => {
    const stack = await startStack();
    const serverIdentity = workload(stack, 'finance-token', 4);
    const clientIdentity = workload(stack, 'crm-token', 3600);
    await Promise.all([serverIdentity.start(), clientIdentity.start()]);
    const { port } = await startWorkloadServer(serverIdentity);
    const before = serverIdentity.current();
    const agent = keepAliveAgent(clientIdentity.current() as WorkloadMaterial);
    cleanups.push(() => agent.destroy());

    const first = await get(port, { agent });
    expect(first.body).toBe(ID('crm')); // mTLS: the server saw the client's SPIFFE ID
    expect(first.serverSerial).toBe(serialOf(before));

    // The server's 4 s certificate is renewed on its own at 40-60% of its life.
    const changes: (WorkloadMaterial | null)[] = [];
    serverIdentity.onChange((m) => changes.push(m));
    await until('the automatic renewal', () => changes.length > 0);
    const after = serverIdentity.current();
    expect(serialOf(after)).not.toBe(serialOf(before));
    expect(after?.spiffeId).toBe(ID('finance'));
    expect((after?.notBefore.getTime() ?? 0) - (before?.notBefore.getTime() ?? 0)).toBeLessThan(
      4_000,
    );

    // The kept-alive connection is still open and still shows the old certificate ...
    const second = await get(port, { agent });
    expect(second.reused).toBe(true);
    expect(second.socket).toBe(first.socket);
    expect(second.serverSerial).toBe(serialOf(before));
    // ... while a new connection gets the renewed one.
    const fresh = await get(port, { material: clientIdentity.current() as WorkloadMaterial });
    expect(fresh.reused).toBe(false);
    expect(fresh.serverSerial).toBe(serialOf(after));
  });

  it('keeps the current certificate while renewal fails, fails closed at expiry, and recovers', async () => {
    const stack = await startStack();
    const logs: Record<string, unknown>[] = [];
    const identity = workload(stack, 'finance-token', 3, {
      logger: createLogger('workload', {
        level: 'info',
        sink: (l) => logs.push(JSON.parse(l) as Record<string, unknown>),
      }),
    });
    const material = await identity.start();
    const events: (WorkloadMaterial | null)[] = [];
    identity.onChange((m) => events.push(m));
    const port = stack.server.port;
    await stack.server.close();

    await until('a failed renewal', () =>
      logs.find((l) => l['msg'] === 'certificate renewal failed; keeping the current certificate'),
    );
    expect(identity.current()).toBe(material);
    await until('the expiry', () => events.includes(null));
    expect(identity.current()).toBeNull();
    expect(Date.now()).toBeGreaterThanOrEqual(material.notAfter.getTime());

    // The identity server comes back on the same port: the client gets a new certificate by token.
    stack.server = await startIdentityServer({
      ca: stack.ca,
      authenticator: new StaticTokenAuthenticator(TOKENS),
      policyIndex: stack.index,
      listen: { host: '127.0.0.1', port },
    });
    const recovered = await until('recovery', () => identity.current());
    expect(recovered.spiffeId).toBe(ID('finance'));
    expect(recovered.notAfter.getTime()).toBeGreaterThan(material.notAfter.getTime());
  });
});

describe('root rotation with traffic', () => {
  it('adds, switches and removes a root without a single failed call', async () => {
    const stack = await startStack({}, 5);
    const serverIdentity = workload(stack, 'finance-token', 4);
    const clientIdentity = workload(stack, 'crm-token', 4);
    await Promise.all([serverIdentity.start(), clientIdentity.start()]);
    // Sidecars learn trust bundle changes from their policy stream.
    for (const identity of [serverIdentity, clientIdentity]) {
      const watch = new PolicyWatchClient({
        target: stack.target,
        credentials: watchCredentialsFrom(identity),
        backoff: { initialMs: 50, maxMs: 200 },
      });
      watch.onSnapshot((s) => identity.setTrustBundle(s.trustBundlePem));
      watch.start();
      await watch.ready();
      cleanups.push(() => watch.stop());
    }
    const { port } = await startWorkloadServer(serverIdentity);
    const oldLeaf = clientIdentity.current() as WorkloadMaterial;

    // The client side builds a fresh keep-alive agent whenever its material changes.
    let agent = keepAliveAgent(oldLeaf);
    clientIdentity.onChange((m) => {
      if (m !== null) agent = keepAliveAgent(m);
    });
    const results = { ok: 0, failed: [] as string[] };
    let running = true;
    const traffic = (async () => {
      while (running) {
        for (const attempt of [
          () => get(port, { agent }),
          () => get(port, { material: clientIdentity.current() as WorkloadMaterial }),
        ]) {
          try {
            const reply = await attempt();
            if (reply.body === ID('crm')) results.ok++;
            else results.failed.push(`unexpected body ${reply.body}`);
          } catch (error) {
            results.failed.push((error as Error).message);
          }
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const roots = (m: WorkloadMaterial | null): number =>
      m === null ? 0 : decodeCertificates(m.trustBundlePem).length;
    const issuedBy = (m: WorkloadMaterial | null, fingerprint: string): boolean => {
      const leaf = new X509Certificate(m?.certificateChainPem ?? '');
      const der = decodeCertificates(stack.ca.trustBundlePem()).find(
        (d) => fingerprintOf(d) === fingerprint,
      );
      const root = der === undefined ? undefined : new X509Certificate(der);
      return root !== undefined && leaf.checkIssued(root) && leaf.verify(root.publicKey);
    };
    const [oldRoot] = stack.ca.trustAnchors();
    if (oldRoot === undefined) throw new Error('no root');

    const moreTraffic = (since: number): Promise<number> =>
      until(
        `more traffic (failures so far: ${results.failed.slice(-3).join('; ')})`,
        () => results.ok > since + 20 && results.ok,
      );
    try {
      const okBefore = await moreTraffic(0);

      // Step 1: the new root joins every bundle; nothing issues from it yet.
      const next = await stack.ca.prepareRootRotation();
      await until(
        'both workloads to trust two roots',
        () => roots(serverIdentity.current()) === 2 && roots(clientIdentity.current()) === 2,
      );
      const okAfterStep1 = await moreTraffic(okBefore);

      // Step 2: issue from the new root; workloads move over at their next renewal.
      await stack.ca.activatePendingRoot();
      await until(
        'leaves from the new root',
        () =>
          issuedBy(serverIdentity.current(), next.fingerprint) &&
          issuedBy(clientIdentity.current(), next.fingerprint),
      );
      const okAfterStep2 = await moreTraffic(okAfterStep1);

      // Step 3: after the longest leaf issued under the old root has expired, remove it.
      await until(
        'the old root to be removable',
        () => stack.ca.removableAfter(oldRoot.fingerprint).getTime() < Date.now(),
        20_000,
      );
      await stack.ca.removeTrustAnchor(oldRoot.fingerprint);
      await until(
        'both workloads to trust one root',
        () => roots(serverIdentity.current()) === 1 && roots(clientIdentity.current()) === 1,
      );
      await moreTraffic(await moreTraffic(okAfterStep2));
    } finally {
      running = false;
      await traffic;
    }

    expect(results.failed).toEqual([]);

    // Control: a client still holding a leaf of the removed root is now refused by the server.
    await expect(
      get(port, { material: { ...oldLeaf, trustBundlePem: stack.ca.trustBundlePem() } }),
    ).rejects.toThrow();
  }, 60_000);
});

describe('clock skew at the TLS handshake', () => {
  async function handshake(ca: CertificateAuthority): Promise<string> {
    const now = Date.now();
    const leaf = (sa: string): WorkloadMaterial => {
      const keys = generateKeysSync('ec-p256');
      const issued = ca.sign({
        csrPem: buildCsr(keys.privateKey),
        identity: { namespace: 'erp', serviceAccount: sa },
      });
      return {
        keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        certificateChainPem: issued.certificateChainPem,
        trustBundlePem: issued.trustBundlePem,
        notBefore: issued.notBefore,
        notAfter: issued.notAfter,
        spiffeId: issued.spiffeId,
      };
    };
    const server = https.createServer(
      { ...secureContextOptions(leaf('finance')), requestCert: true, rejectUnauthorized: true },
      (_req, res) => res.end('ok'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const reply = await get((server.address() as AddressInfo).port, { material: leaf('crm') });
      expect(now).toBeLessThan(Date.now() + 1);
      return reply.body;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    } finally {
      server.close();
    }
  }

  it('a CA clock 30 s ahead of the workloads still yields certificates they accept (back-dating)', async () => {
    const ca = await createCertificateAuthority({
      store: new MemoryCaKeyStore(),
      clock: () => Date.now() + 30_000,
    });
    expect(await handshake(ca)).toBe('ok');
  });

  it('without back-dating the same skew breaks the handshake (control)', async () => {
    const ca = await createCertificateAuthority({
      store: new MemoryCaKeyStore(),
      clock: () => Date.now() + 30_000,
      backdateSeconds: 0,
    });
    expect(await handshake(ca)).toBe('CERT_NOT_YET_VALID');
  });
});
