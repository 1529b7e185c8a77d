/**
 * Sidecar injection: what the erpguard-proxy native sidecar looks like, the JSON patch that adds
 * it (and its token volume, proxy variables, annotation) to a Pod, and the check the validating
 * side uses to make sure the container in a Pod is the one we inject.
 *
 * Every step is idempotent on its own, so re-invocation (reinvocationPolicy: IfNeeded) or a
 * re-submitted, already injected Pod never gets anything twice, and a container another webhook
 * added after our first pass still gets the proxy variables.
 */
import {
  ADMIN_PORT,
  ANNOTATION_INJECTED,
  INBOUND_PORT,
  LABEL_MODULE,
  OUTBOUND_PORT,
  SIDECAR_CONTAINER_NAME,
  TOKEN_AUDIENCE,
} from '../api/v1alpha1/index.js';

import { PatchBuilder } from './json-patch.js';
import type { PathToken } from './json-patch.js';
import { containersOf, isMap, jsonEqual, stringAt } from './objects.js';
import type { JsonMap } from './objects.js';
import type { AdmissionConfig, ResourceRequirements } from './types.js';

/** Opt-out switch: a value other than "true" asks us not to inject (refused in enforced namespaces). */
export const ANNOTATION_INJECT = 'erpguard.io/inject';
/** Port of the app behind the sidecar (set from the first declared container port when absent). */
export const ANNOTATION_APP_PORT = 'erpguard.io/app-port';

export const TOKEN_VOLUME = 'erpguard-token';
export const RUN_VOLUME = 'erpguard-run';
export const TOKEN_DIR = '/var/run/secrets/erpguard.io/serviceaccount';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
/** ConfigMap the controller publishes in enforced namespaces (pkg/kube/trust-bundle.ts). */
export const TRUST_BUNDLE_CONFIGMAP = 'erpguard-trust-bundle';
export const TRUST_BUNDLE_FILE = `${TOKEN_DIR}/ca.crt`;
export const RUN_DIR = '/var/run/erpguard';
/** One hour: the kubelet rotates the token at 80 % of its life. */
export const TOKEN_EXPIRATION_SECONDS = 3600;
export const DEFAULT_SIDECAR_UID = 65532;

const DEFAULT_RESOURCES: ResourceRequirements = {
  requests: { cpu: '50m', memory: '64Mi' },
  limits: { memory: '128Mi' },
};

/** Named ports (at most 15 characters each). The outbound port is loopback-only: not declared. */
export const SIDECAR_PORTS = [
  { name: 'erpguard-mtls', containerPort: INBOUND_PORT, protocol: 'TCP' },
  { name: 'erpguard-admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
] as const;

export function sidecarSecurityContext(config: AdmissionConfig): JsonMap {
  const uid = config.sidecar.runAsUser ?? DEFAULT_SIDECAR_UID;
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

function fieldEnv(name: string, fieldPath: string): JsonMap {
  // apiVersion spelled out: the API server defaults it, and the validating side compares.
  return { name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } };
}

/** The sidecar's environment: its contract with cmd/sidecar. */
export function sidecarEnv(module: string, config: AdmissionConfig): JsonMap[] {
  const env: JsonMap[] = [
    { name: 'ERPGUARD_MODULE', value: module },
    fieldEnv('ERPGUARD_NAMESPACE', 'metadata.namespace'),
    fieldEnv('ERPGUARD_POD_NAME', 'metadata.name'),
    fieldEnv('ERPGUARD_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    fieldEnv('ERPGUARD_APP_PORT', `metadata.annotations['${ANNOTATION_APP_PORT}']`),
    { name: 'ERPGUARD_TRUST_DOMAIN', value: config.trustDomain },
    { name: 'ERPGUARD_CONTROLLER_ADDRESS', value: config.controllerAddress },
    { name: 'ERPGUARD_INBOUND_PORT', value: String(INBOUND_PORT) },
    { name: 'ERPGUARD_OUTBOUND_PORT', value: String(OUTBOUND_PORT) },
    { name: 'ERPGUARD_ADMIN_PORT', value: String(ADMIN_PORT) },
    { name: 'ERPGUARD_TOKEN_FILE', value: TOKEN_FILE },
    { name: 'ERPGUARD_TRUST_BUNDLE_FILE', value: TRUST_BUNDLE_FILE },
  ];
  if (config.sidecar.logLevel !== undefined) {
    env.push({ name: 'ERPGUARD_LOG_LEVEL', value: config.sidecar.logLevel });
  }
  return env;
}

export const SIDECAR_VOLUME_MOUNTS: readonly JsonMap[] = [
  { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
  { name: RUN_VOLUME, mountPath: RUN_DIR },
];

/** The erpguard-proxy container for a pod of `module`. */
export function buildSidecarContainer(module: string, config: AdmissionConfig): JsonMap {
  const c: JsonMap = {
    name: SIDECAR_CONTAINER_NAME,
    image: config.sidecar.image,
    // Native sidecar (KEP-753): starts before the app, stops after it, does not block Job completion.
    restartPolicy: 'Always',
    ports: SIDECAR_PORTS.map((p) => ({ ...p })),
    env: sidecarEnv(module, config),
    resources: structuredClone(config.sidecar.resources ?? DEFAULT_RESOURCES),
    securityContext: sidecarSecurityContext(config),
    volumeMounts: SIDECAR_VOLUME_MOUNTS.map((m) => ({ ...m })),
    // The kubelet starts later init containers and the app only once this succeeds, so the
    // app's first outbound call already finds the proxy with a certificate.
    startupProbe: {
      httpGet: { path: config.sidecar.readinessPath ?? '/readyz', port: ADMIN_PORT },
      periodSeconds: 1,
      failureThreshold: 120,
    },
    readinessProbe: {
      httpGet: { path: config.sidecar.readinessPath ?? '/readyz', port: ADMIN_PORT },
      periodSeconds: 5,
    },
    livenessProbe: {
      httpGet: { path: config.sidecar.livenessPath ?? '/healthz', port: ADMIN_PORT },
      periodSeconds: 10,
      failureThreshold: 3,
    },
  };
  if (config.sidecar.imagePullPolicy !== undefined)
    c['imagePullPolicy'] = config.sidecar.imagePullPolicy;
  return c;
}

export function tokenVolume(): JsonMap {
  return {
    name: TOKEN_VOLUME,
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: TOKEN_AUDIENCE,
            expirationSeconds: TOKEN_EXPIRATION_SECONDS,
            path: 'token',
          },
        },
        // The roots that vouch for the identity service, published per namespace by the
        // controller: the sidecar needs them before it has a certificate of its own.
        { configMap: { name: TRUST_BUNDLE_CONFIGMAP, items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      ],
    },
  };
}

export function runVolume(): JsonMap {
  return { name: RUN_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } };
}

/** NO_PROXY for app containers: loopback and the Kubernetes API, plus configured extras. */
export function noProxyValue(config: AdmissionConfig): string {
  const domain = config.clusterDomain ?? 'cluster.local';
  const entries = [
    'localhost',
    '127.0.0.1',
    '::1',
    'kubernetes',
    'kubernetes.default',
    'kubernetes.default.svc',
    `kubernetes.default.svc.${domain}`,
    ...(config.sidecar.noProxy ?? []),
  ];
  return [...new Set(entries)].join(',');
}

export function proxyEnv(config: AdmissionConfig): JsonMap[] {
  const proxy = `http://127.0.0.1:${OUTBOUND_PORT}`;
  const noProxy = noProxyValue(config);
  // Both spellings: libraries disagree on which one they read (curl ignores upper-case HTTP_PROXY).
  return [
    { name: 'HTTP_PROXY', value: proxy },
    { name: 'http_proxy', value: proxy },
    { name: 'NO_PROXY', value: noProxy },
    { name: 'no_proxy', value: noProxy },
  ];
}

export interface InjectionPlan {
  builder: PatchBuilder;
  /** True when the sidecar container itself was added by this pass. */
  addedSidecar: boolean;
}

function firstContainerPort(spec: JsonMap): number | undefined {
  for (const ref of containersOf(spec, ['containers'])) {
    const ports = ref.container['ports'];
    if (!Array.isArray(ports)) continue;
    for (const p of ports) {
      if (
        isMap(p) &&
        typeof p['containerPort'] === 'number' &&
        (p['protocol'] ?? 'TCP') === 'TCP'
      ) {
        return p['containerPort'];
      }
    }
  }
  return undefined;
}

/**
 * Builds the patch that injects the sidecar into `pod` of `module`. Throws ErpguardError
 * (InvalidDocument) when the pod has a shape we would have to replace to patch.
 */
export function planInjection(
  pod: JsonMap,
  module: string,
  config: AdmissionConfig,
): InjectionPlan {
  const b = new PatchBuilder(pod);
  const spec = b.ensureMap(['spec']);
  const all = containersOf(spec, ['initContainers', 'containers']);
  const hasSidecar = all.some((r) => r.name === SIDECAR_CONTAINER_NAME);

  // 1. The native sidecar, first among init containers so it starts before any other.
  let addedSidecar = false;
  if (!hasSidecar) {
    b.insert(['spec', 'initContainers'], 0, buildSidecarContainer(module, config));
    addedSidecar = true;
  }

  // 2. Volumes, by name.
  const volumes = b.get(['spec', 'volumes']);
  const volumeNames = new Set(
    Array.isArray(volumes) ? volumes.map((v) => (isMap(v) ? v['name'] : undefined)) : [],
  );
  for (const vol of [tokenVolume(), runVolume()]) {
    if (!volumeNames.has(vol['name'])) b.append(['spec', 'volumes'], vol);
  }

  // 3. Proxy variables on every container but ours (init containers run after the sidecar).
  const env = proxyEnv(config);
  for (const ref of containersOf(b.ensureMap(['spec']), ['initContainers', 'containers'])) {
    if (ref.name === SIDECAR_CONTAINER_NAME) continue;
    const path: PathToken[] = ['spec', ref.list, ref.index, 'env'];
    const existing = b.get(path);
    const names = new Set(
      Array.isArray(existing) ? existing.map((e) => (isMap(e) ? e['name'] : undefined)) : [],
    );
    for (const e of env) if (!names.has(e['name'])) b.append(path, e);
  }

  // 4. Annotations: the injected marker and the app port the sidecar forwards to.
  b.addKeyIfAbsent(['metadata', 'annotations'], ANNOTATION_INJECTED, 'true');
  const port = firstContainerPort(b.ensureMap(['spec']));
  if (port !== undefined)
    b.addKeyIfAbsent(['metadata', 'annotations'], ANNOTATION_APP_PORT, String(port));

  return { builder: b, addedSidecar };
}

/** Module label of a pod (undefined when absent or empty). */
export function podModule(pod: unknown): string | undefined {
  const m = stringAt(pod, 'metadata', 'labels', LABEL_MODULE);
  return m === undefined || m === '' ? undefined : m;
}

/**
 * Differences between the erpguard-proxy container of a pod spec and the one we would inject,
 * as field names. Compares what decides whether traffic goes through the proxy and what the
 * proxy is trusted with; ignores what the API server defaults (probe timings, termination
 * message path) and resources (not a bypass).
 */
export function sidecarDifferences(
  spec: JsonMap,
  module: string,
  config: AdmissionConfig,
): string[] {
  const init = Array.isArray(spec['initContainers']) ? spec['initContainers'] : [];
  const idx = init.findIndex((c) => isMap(c) && c['name'] === SIDECAR_CONTAINER_NAME);
  const diffs: string[] = [];
  if (idx < 0) return ['initContainers (no erpguard-proxy)'];
  if (idx !== 0) diffs.push('position (must be the first init container)');
  const actual = init[idx] as JsonMap;
  const want = buildSidecarContainer(module, config);
  for (const field of ['image', 'restartPolicy', 'command', 'args', 'env'] as const) {
    if (!jsonEqual(actual[field], want[field])) diffs.push(field);
  }
  if (
    config.sidecar.imagePullPolicy !== undefined &&
    actual['imagePullPolicy'] !== want['imagePullPolicy']
  ) {
    diffs.push('imagePullPolicy');
  }
  const ports = Array.isArray(actual['ports']) ? actual['ports'] : [];
  for (const p of SIDECAR_PORTS) {
    const found = ports.some(
      (q) =>
        isMap(q) && q['containerPort'] === p.containerPort && (q['protocol'] ?? 'TCP') === 'TCP',
    );
    if (!found) diffs.push(`ports (${p.containerPort})`);
  }
  const sc = actual['securityContext'];
  const wantSc = sidecarSecurityContext(config);
  if (!isMap(sc)) diffs.push('securityContext');
  else
    for (const k of Object.keys(wantSc))
      if (!jsonEqual(sc[k], wantSc[k])) diffs.push(`securityContext.${k}`);
  const mounts = Array.isArray(actual['volumeMounts']) ? actual['volumeMounts'] : [];
  for (const m of SIDECAR_VOLUME_MOUNTS) {
    const found = mounts.some(
      (x) =>
        isMap(x) &&
        x['name'] === m['name'] &&
        x['mountPath'] === m['mountPath'] &&
        (x['readOnly'] ?? false) === (m['readOnly'] ?? false),
    );
    if (!found) diffs.push(`volumeMounts (${String(m['name'])})`);
  }
  // The token volume must be the projected erpguard-audience token, not some other source.
  const volumes = Array.isArray(spec['volumes']) ? spec['volumes'] : [];
  const tv: unknown = volumes.find((v: unknown) => isMap(v) && v['name'] === TOKEN_VOLUME);
  if (!isMap(tv) || !jsonEqual(stripDefaultMode(tv), tokenVolume()))
    diffs.push(`volumes (${TOKEN_VOLUME})`);
  return diffs;
}

/** The API server defaults projected.defaultMode (0644); it does not change what is mounted. */
function stripDefaultMode(vol: JsonMap): JsonMap {
  const projected = vol['projected'];
  if (!isMap(projected)) return vol;
  const { defaultMode: _ignored, ...rest } = projected;
  return { ...vol, projected: rest };
}
