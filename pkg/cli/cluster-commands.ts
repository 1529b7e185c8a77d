/**
 * Cluster commands of the kubectl plugin: approve, status, audit. They reach the API server only
 * through the ClusterApi port (implemented in pkg/kube, wired in cmd/).
 */
import {
  ANNOTATION_APPROVAL,
  ANNOTATION_LAST_AUTHOR,
  CONDITION_READY,
  CONDITION_VERIFIED,
} from '../api/v1alpha1/index.js';
import type { Approval, ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { findCondition } from '../conditions/conditions.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { parseDuration } from '../policy/duration.js';
import { specHash } from '../policy/hash.js';
import { lintPolicy } from '../policy/lint.js';
import { validatePolicyDocument } from '../policy/validate.js';
import { outputFlag, parseFlags, stringFlag } from './args.js';
import type { FlagSpec, ParsedArgs } from './args.js';
import { auditCluster } from './audit-report.js';
import type { ClusterApi, ClusterApiFactory } from './cluster-api.js';
import { ExitCode, formatTable } from './io.js';
import type { CliIo } from './io.js';

const CONNECTION_FLAGS: FlagSpec = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
};

function connect(parsed: ParsedArgs, factory: ClusterApiFactory, io: CliIo): ClusterApi {
  const kubeconfigPath = stringFlag(parsed, 'kubeconfig') ?? io.env['KUBECONFIG'];
  const context = stringFlag(parsed, 'context');
  const namespace = stringFlag(parsed, 'namespace');
  return factory({
    ...(kubeconfigPath ? { kubeconfigPath } : {}),
    ...(context ? { context } : {}),
    ...(namespace ? { namespace } : {}),
  });
}

async function withCluster<T>(
  parsed: ParsedArgs,
  factory: ClusterApiFactory,
  io: CliIo,
  body: (api: ClusterApi) => Promise<T>,
): Promise<T> {
  const api = connect(parsed, factory, io);
  try {
    return await body(api);
  } finally {
    api.close();
  }
}

export function runApprove(factory: ClusterApiFactory) {
  return async (args: readonly string[], io: CliIo): Promise<ExitCode> => {
    const parsed = parseFlags(args, { ...CONNECTION_FLAGS, 'dry-run': { type: 'boolean' } });
    const [name, ...extra] = parsed.positionals;
    if (name === undefined || extra.length > 0)
      throw new ErpguardError(
        ErrorCode.InvalidArgument,
        'name exactly one policy: kubectl erpguard approve NAME [-n NAMESPACE]',
      );
    return withCluster(parsed, factory, io, async (api) => {
      const namespace = stringFlag(parsed, 'namespace') ?? api.defaultNamespace;
      const policy = await api.getPolicy(namespace, name);
      const key = `${namespace}/${name}`;
      const validation = validatePolicyDocument(policy);
      if (validation.errors.length > 0) {
        throw new ErpguardError(
          ErrorCode.PermissionDenied,
          `${key} is invalid and cannot be approved: ${validation.errors.map((e) => e.message).join('; ')}`,
        );
      }
      const lintErrors = lintPolicy(policy, { now: io.now() }).filter(
        (f) => f.severity === 'error',
      );
      if (lintErrors.length > 0) {
        throw new ErpguardError(
          ErrorCode.PermissionDenied,
          `${key} fails the least-privilege lint (${lintErrors.map((f) => `${f.code} at ${f.field}`).join(', ')}); fix the spec first`,
        );
      }
      const user = await api.whoAmI();
      const lastAuthor = policy.metadata.annotations?.[ANNOTATION_LAST_AUTHOR];
      if (lastAuthor !== undefined && lastAuthor === user.username) {
        throw new ErpguardError(
          ErrorCode.PermissionDenied,
          `${user.username} last edited the spec of ${key}: another reviewer must approve it (SelfApproval)`,
        );
      }
      const approval: Approval = {
        by: user.username,
        groups: user.groups,
        at: io.now().toISOString(),
        specHash: specHash(policy.spec),
      };
      if (parsed.values['dry-run'] === true) {
        io.stdout(`would approve ${key} spec ${approval.specHash} as ${user.username}\n`);
        return ExitCode.Ok;
      }
      const resourceVersion = policy.metadata.resourceVersion ?? '';
      await api.patchPolicyAnnotations(namespace, name, resourceVersion, {
        [ANNOTATION_APPROVAL]: JSON.stringify(approval),
      });
      io.stdout(`approved ${key}: spec ${approval.specHash} by ${user.username}\n`);
      return ExitCode.Ok;
    });
  };
}

function age(policy: ErpIntegrationPolicy, now: Date): string {
  const created = Date.parse(policy.metadata.creationTimestamp ?? '');
  if (Number.isNaN(created)) return '-';
  const seconds = Math.max(0, Math.round((now.getTime() - created) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

export function runStatus(factory: ClusterApiFactory) {
  return async (args: readonly string[], io: CliIo): Promise<ExitCode> => {
    const parsed = parseFlags(
      args,
      {
        ...CONNECTION_FLAGS,
        'all-namespaces': { type: 'boolean', short: 'A' },
        output: { type: 'string', short: 'o' },
      },
      false,
    );
    const output = outputFlag(parsed);
    return withCluster(parsed, factory, io, async (api) => {
      const namespace =
        parsed.values['all-namespaces'] === true
          ? undefined
          : (stringFlag(parsed, 'namespace') ?? api.defaultNamespace);
      const policies = await api.listPolicies(namespace);
      const rows = policies.map((p) => {
        const verified = findCondition(p.status?.conditions, CONDITION_VERIFIED);
        const ready = findCondition(p.status?.conditions, CONDITION_READY);
        return {
          policy: `${p.metadata.namespace ?? ''}/${p.metadata.name}`,
          source: p.spec.source.module,
          destination: p.spec.destination.module,
          mode: p.spec.mode ?? 'Enforce',
          verified: verified?.status ?? 'Unknown',
          reason: verified?.reason ?? 'NotReconciled',
          ready: ready?.status ?? 'Unknown',
          message: verified?.message ?? 'no status yet: is the erpguard controller running?',
          dependents: (p.status?.dependents ?? []).map((d) => `${d.kind}/${d.name}`),
          age: age(p, io.now()),
        };
      });
      if (output === 'json') io.stdout(JSON.stringify(rows, null, 2) + '\n');
      else if (rows.length === 0)
        io.stderr(`no ErpIntegrationPolicies${namespace ? ` in namespace ${namespace}` : ''}\n`);
      else
        io.stdout(
          formatTable(
            [
              'POLICY',
              'SOURCE',
              'DESTINATION',
              'MODE',
              'VERIFIED',
              'REASON',
              'READY',
              'DEPENDENTS',
              'AGE',
              'MESSAGE',
            ],
            rows.map((r) => [
              r.policy,
              r.source,
              r.destination,
              r.mode,
              r.verified,
              r.reason,
              r.ready,
              r.dependents.length === 0 ? '-' : r.dependents.join(','),
              r.age,
              r.message,
            ]),
          ),
        );
      return ExitCode.Ok;
    });
  };
}

export function runAudit(factory: ClusterApiFactory) {
  return async (args: readonly string[], io: CliIo): Promise<ExitCode> => {
    const parsed = parseFlags(
      args,
      {
        ...CONNECTION_FLAGS,
        'all-namespaces': { type: 'boolean', short: 'A' },
        'expiring-within': { type: 'string' },
        output: { type: 'string', short: 'o' },
      },
      false,
    );
    const output = outputFlag(parsed);
    const windowText = stringFlag(parsed, 'expiring-within') ?? '720h';
    const expiringWithinMs = parseDuration(
      windowText.replace(/^(\d+)d$/, (_, d: string) => `${Number(d) * 24}h`),
    );
    if (expiringWithinMs === undefined)
      throw new ErpguardError(
        ErrorCode.InvalidArgument,
        `--expiring-within ${JSON.stringify(windowText)} is not a duration like 30d or 720h`,
      );
    return withCluster(parsed, factory, io, async (api) => {
      const allNamespaces = parsed.values['all-namespaces'] === true;
      const namespaces = await api.listNamespaces();
      const scope = allNamespaces
        ? namespaces
        : namespaces.filter(
            (n) => n.name === (stringFlag(parsed, 'namespace') ?? api.defaultNamespace),
          );
      const policies = await api.listPolicies(
        allNamespaces ? undefined : (scope[0]?.name ?? api.defaultNamespace),
      );
      const workloads = (await Promise.all(scope.map((n) => api.listWorkloads(n.name)))).flat();
      const findings = auditCluster({
        policies,
        workloads,
        namespaces: scope,
        now: io.now(),
        expiringWithinMs,
      });
      if (output === 'json') io.stdout(JSON.stringify({ findings }, null, 2) + '\n');
      else if (findings.length === 0) io.stderr('no findings\n');
      else
        io.stdout(
          formatTable(
            ['SEVERITY', 'CODE', 'OBJECT', 'MESSAGE'],
            findings.map((f) => [f.severity, f.code, f.object, f.message]),
          ),
        );
      return findings.some((f) => f.severity === 'error') ? ExitCode.Findings : ExitCode.Ok;
    });
  };
}
