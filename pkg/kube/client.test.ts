import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ErpguardError } from '../errors/errors.js';

import { AgentPool, createKubeClients, loadKubeConfig } from './client.js';

const dir = mkdtempSync(join(tmpdir(), 'erpguard-kube-client-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kubeconfig = (server: string): string => {
  const path = join(dir, `kc-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    path,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [
        { name: 'one', context: { cluster: 'c', user: 'u' } },
        { name: 'two', context: { cluster: 'c', user: 'u' } },
      ],
      'current-context': 'one',
    }),
  );
  return path;
};

describe('loadKubeConfig', () => {
  it('loads a file and selects a context', () => {
    const kc = loadKubeConfig({
      kubeconfigPath: kubeconfig('https://10.0.0.1:6443'),
      context: 'two',
    });
    expect(kc.getCurrentContext()).toBe('two');
    const clients = createKubeClients(kc, { requestTimeoutMs: 1_234 });
    expect(clients.server).toBe('https://10.0.0.1:6443');
    expect(clients.requestTimeoutMs).toBe(1_234);
    clients.close();
  });

  it.each([
    [{ kubeconfigPath: join(dir, 'missing.yaml') }, /kubeconfig: .*missing\.yaml/],
    [
      { kubeconfigPath: kubeconfig('https://10.0.0.1:6443'), context: 'nope' },
      /context "nope" is not in the kubeconfig/,
    ],
    [{ inCluster: true }, /not running in a pod/],
  ])('fails with InvalidConfig: %j', (options, message) => {
    const saved = process.env['KUBERNETES_SERVICE_HOST'];
    delete process.env['KUBERNETES_SERVICE_HOST'];
    try {
      let error: unknown;
      try {
        loadKubeConfig(options);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ErpguardError);
      expect((error as ErpguardError).code).toBe('InvalidConfig');
      expect((error as ErpguardError).message).toMatch(message);
    } finally {
      if (saved !== undefined) process.env['KUBERNETES_SERVICE_HOST'] = saved;
    }
  });
});

describe('AgentPool', () => {
  it('reuses one keep-alive agent per TLS configuration and replaces it on rotation', () => {
    const pool = new AgentPool();
    const a1 = pool.reuse(new HttpsAgent({ ca: 'CA', cert: 'CERT1', key: 'KEY1' }));
    const a2 = pool.reuse(new HttpsAgent({ ca: 'CA', cert: 'CERT1', key: 'KEY1' }));
    expect(a1).toBe(a2);
    expect((a1 as HttpsAgent & { keepAlive: boolean }).keepAlive).toBe(true);
    expect((a1 as HttpsAgent & { options: { cert?: string } }).options.cert).toBe('CERT1');
    const rotated = pool.reuse(new HttpsAgent({ ca: 'CA', cert: 'CERT2', key: 'KEY2' }));
    expect(rotated).not.toBe(a1);
    const insecure = pool.reuse(
      new HttpsAgent({ ca: 'CA', cert: 'CERT2', key: 'KEY2', rejectUnauthorized: false }),
    );
    expect(insecure).not.toBe(rotated);
    const h1 = pool.reuse(new HttpAgent());
    expect(pool.reuse(new HttpAgent())).toBe(h1);
    expect(pool.reuse(undefined)).toBeUndefined();
    pool.destroy();
  });
});
