import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';

import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';

import { decodeCertificates } from '../ca/pem.js';
import { MemoryCaKeyStore } from '../ca/store.js';

import { WebhookCertificateManager } from './webhook-certs.js';
import type { CaBundlePatcher, WebhookCertificateOptions } from './webhook-certs.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

class RecordingPatcher implements CaBundlePatcher {
  bundles: string[] = [];
  accept = true;
  ensure(bundlePem: string): Promise<boolean> {
    if (this.accept) this.bundles.push(bundlePem);
    return Promise.resolve(this.accept);
  }
  get last(): string {
    return this.bundles[this.bundles.length - 1] ?? '';
  }
}

function roots(bundlePem: string): X509Certificate[] {
  return decodeCertificates(bundlePem).map((der) => new X509Certificate(der));
}

async function leaf(m: WebhookCertificateManager): Promise<X509Certificate> {
  return new X509Certificate(await readFile(m.certFile));
}

function issuedBy(cert: X509Certificate, root: X509Certificate): boolean {
  return cert.checkIssued(root) && cert.verify(root.publicKey);
}

describe('WebhookCertificateManager', () => {
  let dir: string;
  let now: number;
  const clock = (): number => now;
  const managers: WebhookCertificateManager[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-webhook-certs-'));
    now = Date.parse('2030-01-01T00:00:00Z');
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  /** Short root so a whole rotation fits in a few simulated days. */
  const make = (
    overrides: Partial<WebhookCertificateOptions> & { store: MemoryCaKeyStore },
  ): WebhookCertificateManager => {
    const m = new WebhookCertificateManager({
      dnsNames: ['erpguard.erpguard-system.svc'],
      ipAddresses: ['127.0.0.1'],
      certDir: join(dir, String(managers.length)),
      isLeader: () => true,
      rootTtlSeconds: 10 * 24 * 3600,
      rotateRootBeforeSeconds: 3 * 24 * 3600,
      overlapSeconds: 3600,
      servingTtlSeconds: 24 * 3600,
      checkIntervalMs: 60_000,
      clock,
      ...overrides,
    });
    managers.push(m);
    return m;
  };

  it('creates a CA, writes a usable serving pair for the names, and patches the bundle as leader', async () => {
    const patcher = new RecordingPatcher();
    const m = make({ store: new MemoryCaKeyStore(), patcher });
    await m.start();
    const [cert, key, bundle] = await Promise.all([
      readFile(m.certFile),
      readFile(m.keyFile),
      readFile(m.bundleFile, 'utf8'),
    ]);
    expect(() => createSecureContext({ cert, key })).not.toThrow();
    const x = new X509Certificate(cert);
    expect(x.subjectAltName).toContain('DNS:erpguard.erpguard-system.svc');
    expect(x.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(x.ca).toBe(false);
    const [root] = roots(bundle);
    expect(root).toBeDefined();
    expect(issuedBy(x, root as X509Certificate)).toBe(true);
    expect(patcher.last).toBe(bundle);
    expect(m.caBundlePem()).toBe(bundle);
    expect(m.status()?.caBundlePatched).toBe(true);
  });

  it('a follower serves from the shared CA but never patches', async () => {
    const store = new MemoryCaKeyStore();
    const leaderPatcher = new RecordingPatcher();
    const followerPatcher = new RecordingPatcher();
    const leader = make({ store, patcher: leaderPatcher });
    const follower = make({ store, patcher: followerPatcher, isLeader: () => false });
    await leader.start();
    await follower.start();
    expect(followerPatcher.bundles).toEqual([]);
    expect(follower.caBundlePem()).toBe(leader.caBundlePem());
    const [root] = roots(leader.caBundlePem());
    expect(issuedBy(await leaf(follower), root as X509Certificate)).toBe(true);
    // Each replica has its own key.
    expect(await readFile(follower.keyFile, 'utf8')).not.toBe(
      await readFile(leader.keyFile, 'utf8'),
    );
  });

  it('renews the serving certificate at two thirds of its lifetime, not before', async () => {
    let reloads = 0;
    const m = make({ store: new MemoryCaKeyStore(), onServingChanged: () => void (reloads += 1) });
    await m.start();
    const first = (await leaf(m)).serialNumber;
    now += 15 * HOUR;
    await m.check();
    expect((await leaf(m)).serialNumber).toBe(first);
    now += 2 * HOUR;
    await m.check();
    expect((await leaf(m)).serialNumber).not.toBe(first);
    expect(reloads).toBe(2);
  });

  it('rotates the root with an overlap: trust both, then issue from the new, then drop the old', async () => {
    const store = new MemoryCaKeyStore();
    const patcher = new RecordingPatcher();
    const m = make({ store, patcher });
    const follower = make({ store, isLeader: () => false });
    await m.start();
    await follower.start();
    const [oldRoot] = roots(m.caBundlePem());

    // 1. Inside rotateRootBefore: the new root is trusted, the old one still issues.
    now += 7 * DAY + HOUR;
    await m.check();
    const both = roots(patcher.last);
    expect(both).toHaveLength(2);
    const newRoot = both.find((r) => r.fingerprint256 !== oldRoot?.fingerprint256);
    expect(newRoot).toBeDefined();
    expect(issuedBy(await leaf(m), oldRoot as X509Certificate)).toBe(true);

    // 2. After the overlap: the new root issues; the follower follows on its next check.
    now += HOUR + 2 * 60_000;
    await m.check();
    await follower.check();
    expect(issuedBy(await leaf(m), newRoot as X509Certificate)).toBe(true);
    expect(issuedBy(await leaf(follower), newRoot as X509Certificate)).toBe(true);
    expect(roots(patcher.last)).toHaveLength(2);

    // 3. Overlap + serving lifetime later: the old root leaves the bundle.
    now += 26 * HOUR;
    await m.check();
    const after = roots(patcher.last);
    expect(after.map((r) => r.fingerprint256)).toEqual([newRoot?.fingerprint256]);
    expect(roots(await readFile(m.bundleFile, 'utf8'))).toHaveLength(1);
  });

  it('does not issue from a new root the API server was not told to trust', async () => {
    const patcher = new RecordingPatcher();
    const m = make({ store: new MemoryCaKeyStore(), patcher });
    await m.start();
    const [oldRoot] = roots(m.caBundlePem());
    patcher.accept = false; // e.g. the webhook configurations are missing
    now += 7 * DAY + HOUR;
    await m.check();
    now += 3 * HOUR;
    await m.check();
    expect(m.status()?.anchors.find((a) => a.pending)).toBeDefined();
    expect(issuedBy(await leaf(m), oldRoot as X509Certificate)).toBe(true);
    patcher.accept = true;
    await m.check();
    expect(m.status()?.anchors.find((a) => a.pending)).toBeUndefined();
    expect(issuedBy(await leaf(m), oldRoot as X509Certificate)).toBe(false);
  });

  it.each([
    [{ dnsNames: [], ipAddresses: [] }, /no DNS name or IP/],
    [{ rotateRootBeforeSeconds: 3600 }, /overlap \+ serving TTL < rotateRootBefore/],
    [{ rotateRootBeforeSeconds: 20 * 24 * 3600 }, /rotateRootBefore < root TTL/],
  ])('rejects a bad configuration %j', (overrides, message) => {
    expect(() => make({ store: new MemoryCaKeyStore(), ...overrides })).toThrow(message);
  });
});
