/**
 * The Helm chart against a real kube-apiserver: lint, render, install, uninstall. The webhooks
 * point at a URL (values `webhook.certificates=url`) because there is no kube-proxy here; the full
 * admission and controller flows are in test/e2e/erpguard.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { loadAll } from 'js-yaml';
import { startControlPlane } from '../harness/control-plane.js';
import type { ControlPlane } from '../harness/control-plane.js';

const CHART = 'charts/erpguard';
const URL_VALUES = [
  '--set',
  'webhook.certificates=url',
  '--set',
  'webhook.url=https://127.0.0.1:1',
  '--set',
  'webhook.caBundle=Zm9v',
];

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

let cp: ControlPlane;
beforeAll(async () => {
  cp = await startControlPlane();
}, 180_000);
afterAll(async () => {
  await cp?.stop();
});

async function render(...args: string[]): Promise<K8sObject[]> {
  const result = await cp.helm([
    'template',
    'erpguard',
    CHART,
    '--namespace',
    'erpguard-system',
    ...args,
  ]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return loadAll(result.stdout).filter((d): d is K8sObject => d !== null && typeof d === 'object');
}

describe('charts/erpguard', () => {
  it('passes helm lint --strict', async () => {
    const result = await cp.helm(['lint', '--strict', CHART]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('ships the same CRD as crds/', async () => {
    const [chart, source] = await Promise.all([
      readFile(`${CHART}/crds/erpguard.io_erpintegrationpolicies.yaml`, 'utf8'),
      readFile('crds/erpguard.io_erpintegrationpolicies.yaml', 'utf8'),
    ]);
    expect(chart).toBe(source);
  });

  it('renders webhooks that fail safe for the cluster: fixed timeouts, system namespaces excluded', async () => {
    const objects = await render();
    const webhooks = objects
      .filter((o) => o.kind.endsWith('WebhookConfiguration'))
      .flatMap((o) =>
        (o['webhooks'] as Record<string, unknown>[]).map(
          (w): Record<string, unknown> & { kind: string } => ({ ...w, kind: o.kind }),
        ),
      );
    expect(webhooks.map((w) => String(w['name'])).sort()).toEqual([
      'pods.mutate.erpguard.io',
      'policies.mutate.erpguard.io',
      'policies.validate.erpguard.io',
      'workloads.validate.erpguard.io',
    ]);
    for (const w of webhooks) {
      expect(w).toMatchObject({
        failurePolicy: 'Fail',
        sideEffects: 'NoneOnDryRun',
        matchPolicy: 'Equivalent',
        admissionReviewVersions: ['v1'],
      });
      expect(w['timeoutSeconds']).toBe(w.kind === 'MutatingWebhookConfiguration' ? 2 : 3);
      const selector = w['namespaceSelector'] as {
        matchExpressions: { key: string; operator: string; values: string[] }[];
      };
      const excluded = selector.matchExpressions.find(
        (e) => e.key === 'kubernetes.io/metadata.name',
      );
      expect(excluded).toMatchObject({ operator: 'NotIn' });
      expect(excluded?.values).toEqual(
        expect.arrayContaining([
          'kube-system',
          'kube-public',
          'kube-node-lease',
          'erpguard-system',
        ]),
      );
    }
    const podMutation = webhooks.find((w) => w['name'] === 'pods.mutate.erpguard.io');
    expect(podMutation?.['reinvocationPolicy']).toBe('IfNeeded');
  });

  it('runs the controller hardened: 2 replicas, PDB, non-root, read-only root, no capabilities', async () => {
    const objects = await render();
    const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as {
      spec: {
        replicas: number;
        template: {
          metadata: { labels: Record<string, string> };
          spec: {
            securityContext: Record<string, unknown>;
            containers: {
              securityContext: Record<string, unknown>;
              resources: Record<string, unknown>;
            }[];
          };
        };
      };
    };
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.template.metadata.labels['erpguard.io/inject']).toBe('false');
    expect(deployment.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(deployment.spec.template.spec.containers[0]?.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(deployment.spec.template.spec.containers[0]?.resources).toHaveProperty('requests');
    expect(objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(true);
  });

  it('grants the controller status writes only through the status subresource', async () => {
    const objects = await render();
    const role = objects.find(
      (o) => o.kind === 'ClusterRole' && o.metadata.name.endsWith('-controller'),
    ) as unknown as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    const policyRules = role.rules.filter((r) => r.apiGroups.includes('erpguard.io'));
    const writes = policyRules.filter((r) =>
      r.verbs.some((v) => ['create', 'update', 'patch', 'delete'].includes(v)),
    );
    expect(writes.flatMap((r) => r.resources)).toEqual(['erpintegrationpolicies/status']);
  });

  it('refuses values that break the schema, naming the field', async () => {
    const result = await cp.helm(['template', 'x', CHART, '--set', 'webhook.certificates=url']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/webhook\/url/);
  });

  it('installs on the real API server, explains the CRD, and uninstalls without leaving webhooks or deleting the CRD', async () => {
    await cp.kubectl(['create', 'namespace', 'erpguard-system']);
    const install = await cp.helm(
      [
        'install',
        'erpguard',
        CHART,
        '--namespace',
        'erpguard-system',
        '--no-hooks',
        '--wait=false',
        ...URL_VALUES,
      ],
      { timeoutMs: 120_000 },
    );
    expect(install.stderr).not.toMatch(/Error/);
    expect(install.code).toBe(0);

    const crd = await cp.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/erpintegrationpolicies.erpguard.io',
    ]);
    expect(crd.code).toBe(0);
    const explain = await cp.kubectl(['explain', 'eip.spec.rules']);
    expect(explain.code).toBe(0);
    expect(explain.stdout).toMatch(/DESCRIPTION/);
    expect(explain.stdout).toMatch(/grpc/);
    const webhooks = await cp.kubectl([
      'get',
      'validatingwebhookconfigurations,mutatingwebhookconfigurations',
      '-o',
      'name',
    ]);
    expect(webhooks.stdout).toMatch(/erpguard/);

    const uninstall = await cp.helm(['uninstall', 'erpguard', '--namespace', 'erpguard-system']);
    expect(uninstall.code).toBe(0);
    const after = await cp.kubectl([
      'get',
      'validatingwebhookconfigurations,mutatingwebhookconfigurations',
      '-o',
      'name',
    ]);
    expect(after.stdout).not.toMatch(/erpguard/);
    const kept = await cp.kubectl([
      'get',
      'crd',
      'erpintegrationpolicies.erpguard.io',
      '-o',
      'name',
    ]);
    expect(kept.stdout.trim()).toBe(
      'customresourcedefinition.apiextensions.k8s.io/erpintegrationpolicies.erpguard.io',
    );
  }, 180_000);
});
