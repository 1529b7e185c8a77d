/**
 * Micro-segmentation planner (pure): which NetworkPolicies erpguard wants, from the policies,
 * their verification results, the namespaces and the modules seen on workloads.
 *
 * One NetworkPolicy per module and namespace, `erpguard-<module>`, selecting the module's pods
 * (`erpguard.io/module: <module>`), type Ingress only:
 *
 * - TCP 15443 (the sidecar's mTLS port) is open to pods of the source modules of the verified
 *   policies whose destination is this module (Enforce and Audit alike: an Audit policy must let
 *   traffic reach the sidecar, which then logs instead of blocking). Sources in another namespace
 *   are matched by `kubernetes.io/metadata.name` (set by the API server, so it cannot be forged
 *   by relabelling a namespace).
 * - Nothing else is open: not the app's own ports (all traffic goes through the sidecar), and a
 *   module with no verified inbound policy gets a deny-all-ingress NetworkPolicy (fail closed).
 * - Optionally TCP 15020 (sidecar admin: health, metrics) from the namespaces given in
 *   `adminIngressNamespaces` (e.g. the monitoring namespace). Default: none.
 *
 * Scope: only namespaces labelled `erpguard.io/enforce: "true"`. Audit namespaces are left alone
 * (audit must never block), as are system namespaces and erpguard's own.
 *
 * No owner references: a module's NetworkPolicy aggregates many policies (no single owner), and
 * garbage collection after the last owner's deletion would *remove* the restriction, failing open.
 * The controller deletes what it no longer wants instead (label `app.kubernetes.io/managed-by:
 * erpguard`, see docs/controller.md).
 */
import { ADMIN_PORT, INBOUND_PORT, LABEL_ENFORCE, LABEL_MODULE } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { SYSTEM_NAMESPACES } from '../admission/snapshot-index.js';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'erpguard';
/** Set by the API server on every namespace (since 1.21); users cannot change it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
export const NETWORK_POLICY_PREFIX = 'erpguard-';

export interface NamespaceLabels {
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface ModuleInNamespace {
  namespace: string;
  module: string;
}

export interface PolicyVerdict {
  policy: ErpIntegrationPolicy;
  verified: boolean;
}

export interface NetworkPolicyPlanInput {
  policies: readonly PolicyVerdict[];
  namespaces: readonly NamespaceLabels[];
  /** Modules seen on workloads (pod template label), with their namespace. */
  workloadModules: readonly ModuleInNamespace[];
  /** erpguard's own namespace: never in scope. */
  ownNamespace?: string;
  /** Namespaces allowed to reach the sidecar admin port 15020. Default none. */
  adminIngressNamespaces?: readonly string[];
}

export interface DesiredNetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: NetworkPolicySpec;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In'; values: string[] }[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
}

export interface NetworkPolicyIngressRule {
  ports: { protocol: 'TCP'; port: number }[];
  from: NetworkPolicyPeer[];
}

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes: ['Ingress'];
  /** Absent: deny all ingress. */
  ingress?: NetworkPolicyIngressRule[];
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const isName = (v: unknown): v is string =>
  typeof v === 'string' && v.length <= 63 && DNS1123_LABEL.test(v);

export function networkPolicyName(module: string): string {
  return `${NETWORK_POLICY_PREFIX}${module}`;
}

/** Namespaces whose modules get NetworkPolicies. */
export function inNetworkPolicyScope(ns: NamespaceLabels, ownNamespace?: string): boolean {
  if (SYSTEM_NAMESPACES.includes(ns.name) || ns.name === ownNamespace) return false;
  return ns.labels[LABEL_ENFORCE] === 'true';
}

const key = (namespace: string, module: string): string => `${namespace}/${module}`;

interface Edges {
  /** ns/module → set of ns/module sources. */
  allowed: Map<string, Set<string>>;
  known: Map<string, ModuleInNamespace>;
}

function collect(input: NetworkPolicyPlanInput, scope: ReadonlySet<string>): Edges {
  const allowed = new Map<string, Set<string>>();
  const known = new Map<string, ModuleInNamespace>();
  const know = (namespace: string, module: string): void => {
    if (scope.has(namespace)) known.set(key(namespace, module), { namespace, module });
  };
  for (const w of input.workloadModules) {
    if (isName(w.namespace) && isName(w.module)) know(w.namespace, w.module);
  }
  for (const { policy, verified } of input.policies) {
    // Caches hold whatever is stored: a malformed or terminating object covers nothing.
    const ns = policy.metadata?.namespace;
    const dst = policy.spec?.destination?.module;
    const src = policy.spec?.source?.module;
    const srcNs = policy.spec?.source?.namespace ?? ns;
    if (!isName(ns) || !isName(dst) || !isName(src) || !isName(srcNs)) continue;
    if (policy.metadata.deletionTimestamp !== undefined) continue;
    know(ns, dst);
    know(srcNs, src);
    if (!verified || !scope.has(ns)) continue;
    const k = key(ns, dst);
    const set = allowed.get(k) ?? new Set<string>();
    set.add(key(srcNs, src));
    allowed.set(k, set);
  }
  return { allowed, known };
}

function inSelector(modules: readonly string[]): LabelSelector {
  return { matchExpressions: [{ key: LABEL_MODULE, operator: 'In', values: [...modules].sort() }] };
}

function sourcePeers(
  namespace: string,
  sources: ReadonlySet<string> | undefined,
): NetworkPolicyPeer[] {
  if (sources === undefined || sources.size === 0) return [];
  const byNs = new Map<string, string[]>();
  for (const s of sources) {
    const slash = s.indexOf('/');
    const ns = s.slice(0, slash);
    const list = byNs.get(ns) ?? [];
    list.push(s.slice(slash + 1));
    byNs.set(ns, list);
  }
  const peers: NetworkPolicyPeer[] = [];
  const same = byNs.get(namespace);
  // A peer without namespaceSelector means "this namespace".
  if (same !== undefined) peers.push({ podSelector: inSelector(same) });
  for (const ns of [...byNs.keys()].filter((n) => n !== namespace).sort()) {
    peers.push({
      namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: ns } },
      podSelector: inSelector(byNs.get(ns) ?? []),
    });
  }
  return peers;
}

function adminRule(
  namespaces: readonly string[] | undefined,
): NetworkPolicyIngressRule | undefined {
  const valid = [...new Set((namespaces ?? []).filter(isName))].sort();
  if (valid.length === 0) return undefined;
  return {
    ports: [{ protocol: 'TCP', port: ADMIN_PORT }],
    from: valid.map((ns) => ({
      namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: ns } },
    })),
  };
}

/** The complete desired set, sorted by namespace then name. */
export function planNetworkPolicies(input: NetworkPolicyPlanInput): DesiredNetworkPolicy[] {
  const scope = new Set(
    input.namespaces
      .filter((ns) => inNetworkPolicyScope(ns, input.ownNamespace))
      .map((ns) => ns.name),
  );
  const { allowed, known } = collect(input, scope);
  const admin = adminRule(input.adminIngressNamespaces);
  const out: DesiredNetworkPolicy[] = [];
  for (const [k, { namespace, module }] of known) {
    const peers = sourcePeers(namespace, allowed.get(k));
    const rules: NetworkPolicyIngressRule[] = [];
    if (peers.length > 0)
      rules.push({ ports: [{ protocol: 'TCP', port: INBOUND_PORT }], from: peers });
    if (admin !== undefined) rules.push(admin);
    out.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: {
        name: networkPolicyName(module),
        namespace,
        labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
      },
      spec: {
        podSelector: { matchLabels: { [LABEL_MODULE]: module } },
        policyTypes: ['Ingress'],
        ...(rules.length > 0 ? { ingress: rules } : {}),
      },
    });
  }
  return out.sort(
    (a, b) =>
      a.metadata.namespace.localeCompare(b.metadata.namespace) ||
      a.metadata.name.localeCompare(b.metadata.name),
  );
}

/** JSON without undefined members and with sorted keys: equal specs give equal strings. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined && v !== null)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Whether a live NetworkPolicy spec already is the desired one. An empty `ingress` list and an
 * absent one mean the same (deny all), as do an empty and an absent selector map.
 */
export function networkPolicySpecEquals(live: unknown, desired: NetworkPolicySpec): boolean {
  const norm = (spec: unknown): string => {
    const s = { ...(typeof spec === 'object' && spec !== null ? spec : {}) } as Record<
      string,
      unknown
    >;
    if (Array.isArray(s['ingress']) && s['ingress'].length === 0) delete s['ingress'];
    return canonical(s);
  };
  return norm(live) === norm(desired);
}
