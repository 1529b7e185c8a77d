/**
 * Configuration of `erpguard-controller` from flags and environment (flags win). Every bad value
 * is an InvalidArgument error naming the flag; nothing here does I/O besides reading `env`.
 */
import { parseFlags, stringFlag } from '../../pkg/cli/args.js';
import { ErpguardError, ErrorCode } from '../../pkg/errors/errors.js';
import { parseDuration } from '../../pkg/policy/duration.js';
import type { ResourceRequirements } from '../../pkg/admission/types.js';
import { isLogLevel } from '../../pkg/telemetry/logger.js';
import type { LogLevel } from '../../pkg/telemetry/logger.js';

export interface ControllerConfig {
  kubeconfig?: string;
  context?: string;
  inCluster: boolean;
  /** erpguard's namespace (Lease, CA Secret; never gets NetworkPolicies). */
  namespace: string;
  watchNamespace?: string;
  reviewerGroups: string[];
  reviewerUsers: string[];
  leaderElect: boolean;
  leaseName: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  identity?: string;
  adminHost: string;
  adminPort: number;
  workers: number;
  resyncPeriodMs: number;
  networkPolicies: boolean;
  adminIngressNamespaces: string[];
  shutdownTimeoutMs: number;
  logLevel: LogLevel;
  help: boolean;
  /** `--config`: the chart's config.yaml; its values sit below flags and environment. */
  configFile?: string;
  /** Workload CA: a directory store (tests, local) or else the Secret `caSecretName`. */
  caDir?: string;
  caSecretName: string;
  trustDomain: string;
  caDefaultTtlSeconds: number;
  caMaxTtlSeconds: number;
  grpcHost: string;
  grpcPort: number;
  /** host:port sidecars dial (injected into pods). */
  controllerAddress: string;
  webhookHost: string;
  webhookPort: number;
  webhook: WebhookCertificateConfig;
  sidecarImage: string;
  sidecarResources?: ResourceRequirements;
}

export type WebhookCertificateMode = 'self' | 'certManager' | 'url';

export interface WebhookCertificateConfig {
  mode: WebhookCertificateMode;
  /** certManager/url: files written by someone else (reloaded on change). */
  certFile: string;
  keyFile: string;
  /** self: where the serving pair is written for the webhook server. */
  certDir: string;
  /** self: the Secret holding the webhook CA. */
  secretName: string;
  /** self: Mutating/ValidatingWebhookConfiguration name whose caBundle is kept current. */
  configurationName: string;
  /** self: names in the serving certificate (`<service>.<ns>.svc` and friends) plus extras. */
  dnsNames: string[];
  ipAddresses: string[];
}

export const USAGE = `Usage: erpguard-controller [flags]

Watches ErpIntegrationPolicies, writes their status (Verified, Ready, dependents), keeps one
NetworkPolicy per ERP module, and elects a leader for writes with a Lease.

Flags (environment variable in brackets; flags win):
  --kubeconfig PATH            kubeconfig file [KUBECONFIG]; default ~/.kube/config or in-cluster
  --context NAME               kubeconfig context
  --in-cluster                 use the pod's ServiceAccount only
  --namespace NS               erpguard's namespace [ERPGUARD_NAMESPACE, POD_NAMESPACE] (default erpguard)
  --watch-namespace NS         only policies of this namespace (default: all)
  --reviewer-groups A,B        groups whose members may approve policies [ERPGUARD_REVIEWER_GROUPS]
  --reviewer-users A,B         users who may approve policies [ERPGUARD_REVIEWER_USERS]
  --leader-elect BOOL          elect a leader for writes (default true)
  --lease-name NAME            Lease name (default erpguard-controller)
  --lease-duration D           (default 15s)
  --renew-deadline D           (default 10s)
  --retry-period D             (default 2s)
  --identity NAME              this replica in the Lease and Events [POD_NAME] (default hostname + random)
  --admin-address HOST:PORT    /healthz /readyz /metrics (default 0.0.0.0:15020)
  --workers N                  parallel reconciles (default 4)
  --resync-period D            reconcile everything this often (default 10m)
  --network-policies BOOL      manage NetworkPolicies (default true)
  --admin-ingress-namespaces A,B  namespaces that may reach the sidecar admin port 15020 (default none)
  --shutdown-timeout D         drain time on SIGTERM (default 10s)
  --log-level LEVEL            debug|info|warn|error [ERPGUARD_LOG_LEVEL] (default info)
  --config PATH                YAML config (the chart's config.yaml); flags and environment win

Workload CA and gRPC identity/policy service:
  --ca-dir DIR                 keep the CA in a directory instead of the Secret
  --ca-secret NAME             Secret holding the CA in --namespace (default erpguard-ca)
  --trust-domain DOMAIN        SPIFFE trust domain (default cluster.local)
  --ca-default-ttl D           workload certificate lifetime when none is asked (default 1h)
  --ca-max-ttl D               longest workload certificate (default 24h, at most 24h)
  --grpc-address HOST:PORT     gRPC over TLS (default 0.0.0.0:15012)
  --controller-address H:P     what injected sidecars dial (default erpguard.<namespace>.svc:15012)

Admission webhook (every replica serves it):
  --webhook-address HOST:PORT  HTTPS (default 0.0.0.0:9443)
  --webhook-certificates MODE  self|certManager|url (default self): self = own CA in a Secret,
                               caBundle patched and rotated by the leader; otherwise read files
  --webhook-cert-file PATH     certManager/url (default /etc/erpguard/webhook-tls/tls.crt)
  --webhook-key-file PATH      certManager/url (default /etc/erpguard/webhook-tls/tls.key)
  --webhook-cert-dir DIR       self: where the serving pair is written (default /tmp/erpguard-webhook)
  --webhook-secret NAME        self: Secret of the webhook CA (default erpguard-webhook-tls)
  --webhook-configuration NAME self: webhook configurations to patch (default erpguard)
  --webhook-service NAME       self: Service in front of the webhook (default erpguard)
  --webhook-dns-names A,B      self: extra DNS names in the serving certificate
  --webhook-ip-addresses A,B   self: IP addresses in the serving certificate (e.g. 127.0.0.1)
  --sidecar-image REF          image injected as the sidecar (default ghcr.io/erpguard/erpguard:0.1.0)
  --sidecar-resources JSON     {"requests":{...},"limits":{...}} of the sidecar
  -h, --help
`;

const FLAGS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  'in-cluster': { type: 'boolean' },
  namespace: { type: 'string' },
  'watch-namespace': { type: 'string' },
  'reviewer-groups': { type: 'string' },
  'reviewer-users': { type: 'string' },
  'leader-elect': { type: 'string' },
  'lease-name': { type: 'string' },
  'lease-duration': { type: 'string' },
  'renew-deadline': { type: 'string' },
  'retry-period': { type: 'string' },
  identity: { type: 'string' },
  'admin-address': { type: 'string' },
  workers: { type: 'string' },
  'resync-period': { type: 'string' },
  'network-policies': { type: 'string' },
  'admin-ingress-namespaces': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  config: { type: 'string' },
  'ca-dir': { type: 'string' },
  'ca-secret': { type: 'string' },
  'trust-domain': { type: 'string' },
  'ca-default-ttl': { type: 'string' },
  'ca-max-ttl': { type: 'string' },
  'grpc-address': { type: 'string' },
  'controller-address': { type: 'string' },
  'webhook-address': { type: 'string' },
  'webhook-certificates': { type: 'string' },
  'webhook-cert-file': { type: 'string' },
  'webhook-key-file': { type: 'string' },
  'webhook-cert-dir': { type: 'string' },
  'webhook-secret': { type: 'string' },
  'webhook-configuration': { type: 'string' },
  'webhook-service': { type: 'string' },
  'webhook-dns-names': { type: 'string' },
  'webhook-ip-addresses': { type: 'string' },
  'sidecar-image': { type: 'string' },
  'sidecar-resources': { type: 'string' },
} as const;

export type ControllerFlag = keyof typeof FLAGS;
/** Values from the config file, keyed by the flag they stand for. */
export type FileValues = Partial<Record<ControllerFlag, string>>;
export const DEFAULT_SIDECAR_IMAGE = 'ghcr.io/erpguard/erpguard:0.1.0';
const MODES: readonly WebhookCertificateMode[] = ['self', 'certManager', 'url'];

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function bad(flag: string, message: string): ErpguardError {
  return new ErpguardError(ErrorCode.InvalidArgument, `--${flag}: ${message}`);
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function bool(flag: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw bad(flag, `must be 'true' or 'false', not ${JSON.stringify(value)}`);
}

function duration(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0)
    throw bad(flag, `must be a positive duration like 10s, not ${JSON.stringify(value)}`);
  return ms;
}

function namespaceName(flag: string, value: string): string {
  if (value.length > 63 || !DNS1123_LABEL.test(value)) {
    throw bad(flag, `${JSON.stringify(value)} is not a namespace name`);
  }
  return value;
}

function address(value: string, flag = 'admin-address'): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = colon <= 0 ? '0.0.0.0' : value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const text = value.slice(colon + 1);
  const port = Number(text);
  if (text === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw bad(flag, `must be HOST:PORT with a port in 0..65535, not ${JSON.stringify(value)}`);
  }
  return { host, port };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const DNS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function resources(value: string | undefined): ResourceRequirements | undefined {
  if (value === undefined || value === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw bad('sidecar-resources', 'must be JSON like {"requests":{"cpu":"50m"}}');
  }
  const out: ResourceRequirements = {};
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw bad('sidecar-resources', 'must be an object with requests and/or limits');
  }
  for (const [k, v] of Object.entries(parsed)) {
    if (k !== 'requests' && k !== 'limits') throw bad('sidecar-resources', `unknown key ${k}`);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw bad('sidecar-resources', `${k} must be an object of quantities`);
    }
    const quantities: Record<string, string> = {};
    for (const [name, q] of Object.entries(v as Record<string, unknown>)) {
      if (typeof q !== 'string' && typeof q !== 'number') {
        throw bad('sidecar-resources', `${k}.${name} must be a quantity`);
      }
      quantities[name] = String(q);
    }
    out[k] = quantities;
  }
  return out;
}

/**
 * Flags win over the environment, which wins over `file` (the parsed `--config`, see
 * config-file.ts), which wins over the defaults.
 */
export function parseControllerConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  file: FileValues = {},
): ControllerConfig {
  const parsed = parseFlags(args, FLAGS, false);
  const flag = (name: ControllerFlag): string | undefined => stringFlag(parsed, name);
  const fromFile = (name: ControllerFlag): string | undefined => file[name];
  // Where no environment variable exists, a flag falls back to the file directly.
  const s = (name: ControllerFlag): string | undefined => flag(name) ?? fromFile(name);
  const namespace = namespaceName(
    'namespace',
    flag('namespace') ??
      env['ERPGUARD_NAMESPACE'] ??
      env['POD_NAMESPACE'] ??
      fromFile('namespace') ??
      'erpguard',
  );
  const watch = s('watch-namespace');
  const logLevel =
    flag('log-level') ?? env['ERPGUARD_LOG_LEVEL'] ?? fromFile('log-level') ?? 'info';
  if (!isLogLevel(logLevel)) throw bad('log-level', `unknown level ${JSON.stringify(logLevel)}`);
  const workers = Number(s('workers') ?? '4');
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw bad('workers', 'must be an integer from 1 to 64');
  }
  const leaseDurationMs = duration('lease-duration', s('lease-duration'), 15_000);
  const renewDeadlineMs = duration('renew-deadline', s('renew-deadline'), 10_000);
  const retryPeriodMs = duration('retry-period', s('retry-period'), 2_000);
  if (!(retryPeriodMs < renewDeadlineMs && renewDeadlineMs < leaseDurationMs)) {
    throw bad('renew-deadline', 'need retry-period < renew-deadline < lease-duration');
  }
  const admin = address(s('admin-address') ?? '0.0.0.0:15020');
  const adminIngress = list(s('admin-ingress-namespaces')).map((ns) =>
    namespaceName('admin-ingress-namespaces', ns),
  );
  const identity = flag('identity') ?? env['POD_NAME'] ?? fromFile('identity');
  const kubeconfig = s('kubeconfig');
  const context = s('context');
  const trustDomain = s('trust-domain') ?? 'cluster.local';
  if (trustDomain.length > 253 || !DNS_NAME.test(trustDomain)) {
    throw bad('trust-domain', `${JSON.stringify(trustDomain)} is not a DNS name`);
  }
  const grpc = address(s('grpc-address') ?? '0.0.0.0:15012', 'grpc-address');
  const webhookListen = address(s('webhook-address') ?? '0.0.0.0:9443', 'webhook-address');
  const modeText = s('webhook-certificates') ?? 'self';
  const mode = MODES.find((m) => m === modeText);
  if (mode === undefined) {
    throw bad(
      'webhook-certificates',
      `must be one of ${MODES.join(', ')}, not ${JSON.stringify(modeText)}`,
    );
  }
  const service = s('webhook-service') ?? 'erpguard';
  if (!DNS1123_LABEL.test(service)) {
    throw bad('webhook-service', `${JSON.stringify(service)} is not a Service name`);
  }
  const extraDns = list(s('webhook-dns-names'));
  for (const name of extraDns) {
    if (!DNS_NAME.test(name))
      throw bad('webhook-dns-names', `${JSON.stringify(name)} is not a DNS name`);
  }
  const ips = list(s('webhook-ip-addresses'));
  for (const ip of ips) {
    if (!IPV4.test(ip) && !/^[0-9a-f:]+$/i.test(ip)) {
      throw bad('webhook-ip-addresses', `${JSON.stringify(ip)} is not an IP address`);
    }
  }
  const sidecarResources = resources(s('sidecar-resources'));
  const config: ControllerConfig = {
    inCluster: parsed.values['in-cluster'] === true,
    namespace,
    reviewerGroups: list(
      flag('reviewer-groups') ?? env['ERPGUARD_REVIEWER_GROUPS'] ?? fromFile('reviewer-groups'),
    ),
    reviewerUsers: list(
      flag('reviewer-users') ?? env['ERPGUARD_REVIEWER_USERS'] ?? fromFile('reviewer-users'),
    ),
    leaderElect: bool('leader-elect', s('leader-elect'), true),
    leaseName: s('lease-name') ?? 'erpguard-controller',
    leaseDurationMs,
    renewDeadlineMs,
    retryPeriodMs,
    adminHost: admin.host,
    adminPort: admin.port,
    workers,
    resyncPeriodMs: duration('resync-period', s('resync-period'), 600_000),
    networkPolicies: bool('network-policies', s('network-policies'), true),
    adminIngressNamespaces: adminIngress,
    shutdownTimeoutMs: duration('shutdown-timeout', s('shutdown-timeout'), 10_000),
    logLevel,
    help: parsed.values['help'] === true,
    caSecretName: s('ca-secret') ?? 'erpguard-ca',
    trustDomain,
    caDefaultTtlSeconds: duration('ca-default-ttl', s('ca-default-ttl'), 3_600_000) / 1000,
    caMaxTtlSeconds: duration('ca-max-ttl', s('ca-max-ttl'), 86_400_000) / 1000,
    grpcHost: grpc.host,
    grpcPort: grpc.port,
    controllerAddress: s('controller-address') ?? `erpguard.${namespace}.svc:${grpc.port || 15012}`,
    webhookHost: webhookListen.host,
    webhookPort: webhookListen.port,
    webhook: {
      mode,
      certFile: s('webhook-cert-file') ?? '/etc/erpguard/webhook-tls/tls.crt',
      keyFile: s('webhook-key-file') ?? '/etc/erpguard/webhook-tls/tls.key',
      certDir: s('webhook-cert-dir') ?? '/tmp/erpguard-webhook',
      secretName: s('webhook-secret') ?? 'erpguard-webhook-tls',
      configurationName: s('webhook-configuration') ?? 'erpguard',
      dnsNames: [
        `${service}.${namespace}.svc`,
        `${service}.${namespace}.svc.cluster.local`,
        ...extraDns,
      ],
      ipAddresses: ips,
    },
    sidecarImage: s('sidecar-image') ?? DEFAULT_SIDECAR_IMAGE,
    ...(sidecarResources !== undefined ? { sidecarResources } : {}),
    ...(flag('config') !== undefined ? { configFile: flag('config') as string } : {}),
    ...(s('ca-dir') !== undefined ? { caDir: s('ca-dir') as string } : {}),
    ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    ...(context !== undefined ? { context } : {}),
    ...(watch !== undefined ? { watchNamespace: namespaceName('watch-namespace', watch) } : {}),
    ...(identity !== undefined && identity !== '' ? { identity } : {}),
  };
  if (config.inCluster && config.kubeconfig !== undefined) {
    throw bad('in-cluster', 'cannot be combined with --kubeconfig');
  }
  if (config.caDefaultTtlSeconds > config.caMaxTtlSeconds) {
    throw bad('ca-default-ttl', 'must not exceed --ca-max-ttl');
  }
  if (config.caMaxTtlSeconds > 86_400) throw bad('ca-max-ttl', 'must be at most 24h');
  return config;
}
