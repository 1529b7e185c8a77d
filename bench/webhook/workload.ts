/**
 * The benchmark's cluster and requests: 24 ERP modules in one enforced namespace, each calling
 * three others through verified policies (72 policies, approved with real spec hashes), and
 * AdmissionReviews shaped like the API server's: a Deployment CREATE for /validate, a
 * ReplicaSet-made Pod CREATE for /mutate, and the injected Pod for /validate.
 */
import { randomUUID } from 'node:crypto';

import type { AdmissionConfig, Snapshot } from '../../pkg/admission/index.js';
import { mutateReview, parseAdmissionReview } from '../../pkg/admission/index.js';
import type {
  ErpIntegrationPolicy,
  ErpIntegrationPolicySpec,
} from '../../pkg/api/v1alpha1/index.js';
import { specHash } from '../../pkg/policy/hash.js';

export const MODULES = [
  'finance',
  'crm',
  'wms',
  'bi',
  'hr',
  'inventory',
  'payroll',
  'sales',
  'procurement',
  'logistics',
  'billing',
  'tax',
  'assets',
  'projects',
  'quality',
  'maintenance',
  'pricing',
  'shipping',
  'returns',
  'treasury',
  'audit',
  'budget',
  'contracts',
  'crm-portal',
];
const NAMESPACE = 'erp';

export const benchConfig: Omit<AdmissionConfig, 'now'> = {
  reviewers: { groups: ['erp-reviewers'] },
  ownNamespace: 'erpguard-system',
  sidecar: {
    image:
      'registry.example/erpguard/proxy:0.1.0@sha256:4f2b0e1c9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f',
  },
  trustDomain: 'cluster.local',
  controllerAddress: 'erpguard-controller.erpguard-system.svc:15012',
};

/** Destinations of module i: the next three modules. */
export function integrationsOf(module: string): string[] {
  const i = MODULES.indexOf(module);
  return [1, 2, 3].map((d) => MODULES[(i + d) % MODULES.length] as string);
}

export function buildSnapshot(now: Date): Snapshot {
  const validUntil = new Date(now.getTime() + 180 * 86_400_000)
    .toISOString()
    .replace(/\.\d+Z$/, 'Z');
  const policies: ErpIntegrationPolicy[] = [];
  for (const src of MODULES) {
    for (const dst of integrationsOf(src)) {
      const spec: ErpIntegrationPolicySpec = {
        source: { module: src },
        destination: { module: dst },
        mode: 'Enforce',
        rules: [
          { methods: ['GET'], paths: [`/api/v1/${dst}/records`, `/api/v1/${dst}/records/{id}`] },
          { methods: ['POST'], paths: [`/api/v1/${dst}/records/{id}/events`] },
        ],
        rateLimit: { requestsPerSecond: 100, burst: 200 },
        dataProtection: { mask: ['$.items[*].iban'] },
        certificateTTL: '1h',
        validUntil,
      };
      policies.push({
        apiVersion: 'erpguard.io/v1alpha1',
        kind: 'ErpIntegrationPolicy',
        metadata: {
          name: `${src}-to-${dst}`,
          namespace: NAMESPACE,
          annotations: {
            'erpguard.io/last-author': 'alice@corp.example',
            'erpguard.io/approval': JSON.stringify({
              by: 'bob@corp.example',
              groups: ['erp-reviewers'],
              at: new Date(now.getTime() - 86_400_000).toISOString(),
              specHash: specHash(spec),
            }),
          },
        },
        spec,
      });
    }
  }
  return {
    policies,
    serviceAccounts: [
      { namespace: NAMESPACE, name: 'default' },
      ...MODULES.map((m) => ({ namespace: NAMESPACE, name: m, module: m })),
    ],
    namespaces: [
      {
        name: NAMESPACE,
        labels: { 'kubernetes.io/metadata.name': NAMESPACE, 'erpguard.io/enforce': 'true' },
      },
      { name: 'kube-system', labels: { 'kubernetes.io/metadata.name': 'kube-system' } },
    ],
  };
}

const userInfo = {
  username: 'system:serviceaccount:kube-system:replicaset-controller',
  uid: 'a7c1e2f3-0000-4000-8000-000000000001',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
};

function container(module: string): Record<string, unknown> {
  return {
    name: 'app',
    image: `registry.example/erp/${module}:5.12.3`,
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: [
      { name: 'JAVA_TOOL_OPTIONS', value: '-XX:MaxRAMPercentage=75 -XX:+UseG1GC' },
      { name: 'DB_HOST', value: `${module}-db.erp.svc` },
      {
        name: 'DB_PASSWORD',
        valueFrom: { secretKeyRef: { name: `${module}-db`, key: 'password' } },
      },
      {
        name: 'POD_NAME',
        valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } },
      },
    ],
    resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '2Gi' } },
    readinessProbe: {
      httpGet: { path: '/health/ready', port: 8080, scheme: 'HTTP' },
      timeoutSeconds: 1,
      periodSeconds: 10,
      successThreshold: 1,
      failureThreshold: 3,
    },
    livenessProbe: {
      httpGet: { path: '/health/live', port: 8080, scheme: 'HTTP' },
      timeoutSeconds: 1,
      periodSeconds: 10,
      successThreshold: 1,
      failureThreshold: 3,
    },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/erp', readOnly: true },
      {
        name: 'kube-api-access-9xk2p',
        mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
        readOnly: true,
      },
    ],
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
    imagePullPolicy: 'IfNotPresent',
    securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false },
  };
}

function podSpec(module: string): Record<string, unknown> {
  return {
    volumes: [
      { name: 'config', configMap: { name: `${module}-config`, defaultMode: 420 } },
      {
        name: 'kube-api-access-9xk2p',
        projected: {
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            {
              downwardAPI: {
                items: [
                  {
                    path: 'namespace',
                    fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' },
                  },
                ],
              },
            },
          ],
          defaultMode: 420,
        },
      },
    ],
    containers: [container(module)],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
    serviceAccountName: module,
    serviceAccount: module,
    securityContext: { fsGroup: 1000 },
    schedulerName: 'default-scheduler',
    tolerations: [
      {
        key: 'node.kubernetes.io/not-ready',
        operator: 'Exists',
        effect: 'NoExecute',
        tolerationSeconds: 300,
      },
      {
        key: 'node.kubernetes.io/unreachable',
        operator: 'Exists',
        effect: 'NoExecute',
        tolerationSeconds: 300,
      },
    ],
    priority: 0,
    enableServiceLinks: true,
    preemptionPolicy: 'PreemptLowerPriority',
  };
}

function labels(module: string): Record<string, string> {
  return {
    app: module,
    'app.kubernetes.io/name': module,
    'app.kubernetes.io/part-of': 'erp',
    'erpguard.io/module': module,
  };
}

function review(
  kind: Record<string, string>,
  resource: Record<string, string>,
  name: string | undefined,
  object: unknown,
): Record<string, unknown> {
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: randomUUID(),
      kind,
      resource,
      requestKind: kind,
      requestResource: resource,
      ...(name !== undefined ? { name } : {}),
      namespace: NAMESPACE,
      operation: 'CREATE',
      userInfo,
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

export function deploymentReview(module: string): Record<string, unknown> {
  const integrations = integrationsOf(module).join(',');
  return review(
    { group: 'apps', version: 'v1', kind: 'Deployment' },
    { group: 'apps', version: 'v1', resource: 'deployments' },
    `${module}-api`,
    {
      kind: 'Deployment',
      apiVersion: 'apps/v1',
      metadata: {
        name: `${module}-api`,
        namespace: NAMESPACE,
        creationTimestamp: null,
        labels: labels(module),
        annotations: { 'deployment.kubernetes.io/revision': '1' },
      },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: module } },
        template: {
          metadata: {
            creationTimestamp: null,
            labels: labels(module),
            annotations: { 'erpguard.io/integrations': integrations },
          },
          spec: podSpec(module),
        },
        strategy: {
          type: 'RollingUpdate',
          rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' },
        },
        revisionHistoryLimit: 10,
        progressDeadlineSeconds: 600,
      },
      status: {},
    },
  );
}

export function podReview(module: string): Record<string, unknown> {
  return review(
    { group: '', version: 'v1', kind: 'Pod' },
    { group: '', version: 'v1', resource: 'pods' },
    undefined,
    {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: {
        generateName: `${module}-api-5f7d8c9b6d-`,
        creationTimestamp: null,
        labels: { ...labels(module), 'pod-template-hash': '5f7d8c9b6d' },
        annotations: { 'erpguard.io/integrations': integrationsOf(module).join(',') },
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: `${module}-api-5f7d8c9b6d`,
            uid: randomUUID(),
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: podSpec(module),
      status: { phase: 'Pending', qosClass: 'Burstable' },
    },
  );
}

/** The Pod review after our mutation (what /validate sees in the cluster). */
export function injectedPodReview(
  module: string,
  snapshot: Snapshot,
  now: Date,
): Record<string, unknown> {
  const raw = podReview(module);
  const parsed = parseAdmissionReview(raw);
  if (!parsed.ok) throw new Error(parsed.message);
  const m = mutateReview(parsed.review, snapshot, { ...benchConfig, now });
  if (m.patchedObject === undefined) throw new Error('the bench pod was not injected');
  return {
    ...raw,
    request: { ...(raw['request'] as Record<string, unknown>), object: m.patchedObject },
  };
}

export interface BenchRequest {
  path: '/validate' | '/mutate';
  label: string;
  body: string;
}

/** A rotation of realistic requests: Deployment validate, Pod mutate, injected Pod validate. */
export function requestMix(snapshot: Snapshot, now: Date): BenchRequest[] {
  const out: BenchRequest[] = [];
  for (const m of MODULES) {
    out.push({
      path: '/validate',
      label: 'deployment-validate',
      body: JSON.stringify(deploymentReview(m)),
    });
    out.push({ path: '/mutate', label: 'pod-mutate', body: JSON.stringify(podReview(m)) });
    out.push({
      path: '/validate',
      label: 'pod-validate',
      body: JSON.stringify(injectedPodReview(m, snapshot, now)),
    });
  }
  return out;
}
