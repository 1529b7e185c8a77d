/**
 * Configuration of `erpguard-controller` from flags and environment (flags win). Every bad value
 * is an InvalidArgument error naming the flag; nothing here does I/O besides reading `env`.
 */
import { parseFlags, stringFlag } from '../../pkg/cli/args.js';
import { ErpguardError, ErrorCode } from '../../pkg/errors/errors.js';
import { parseDuration } from '../../pkg/policy/duration.js';
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
} as const;

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

function address(value: string): { host: string; port: number } {
  const colon = value.lastIndexOf(':');
  const host = colon <= 0 ? '0.0.0.0' : value.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(value.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw bad(
      'admin-address',
      `must be HOST:PORT with a port in 0..65535, not ${JSON.stringify(value)}`,
    );
  }
  return { host, port };
}

export function parseControllerConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ControllerConfig {
  const parsed = parseFlags(args, FLAGS, false);
  const s = (name: keyof typeof FLAGS): string | undefined => stringFlag(parsed, name);
  const namespace = namespaceName(
    'namespace',
    s('namespace') ?? env['ERPGUARD_NAMESPACE'] ?? env['POD_NAMESPACE'] ?? 'erpguard',
  );
  const watch = s('watch-namespace');
  const logLevel = s('log-level') ?? env['ERPGUARD_LOG_LEVEL'] ?? 'info';
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
  const identity = s('identity') ?? env['POD_NAME'];
  const kubeconfig = s('kubeconfig');
  const context = s('context');
  const config: ControllerConfig = {
    inCluster: parsed.values['in-cluster'] === true,
    namespace,
    reviewerGroups: list(s('reviewer-groups') ?? env['ERPGUARD_REVIEWER_GROUPS']),
    reviewerUsers: list(s('reviewer-users') ?? env['ERPGUARD_REVIEWER_USERS']),
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
    ...(kubeconfig !== undefined ? { kubeconfig } : {}),
    ...(context !== undefined ? { context } : {}),
    ...(watch !== undefined ? { watchNamespace: namespaceName('watch-namespace', watch) } : {}),
    ...(identity !== undefined && identity !== '' ? { identity } : {}),
  };
  if (config.inCluster && config.kubeconfig !== undefined) {
    throw bad('in-cluster', 'cannot be combined with --kubeconfig');
  }
  return config;
}
