/**
 * The peer: what a straightforward authorizer does. Per destination, a flat list of rules with one
 * regular expression per path template compiled up front; each decision scans every rule of the
 * destination, keeps the matches of this caller and method, and picks the winner by the same
 * precedence as the engine. It uses the same normaliser, so the ratio measures matching only.
 */
import type { ErpIntegrationPolicy, PolicyMode } from '../../pkg/api/v1alpha1/index.js';
import { HTTP_METHODS } from '../../pkg/api/v1alpha1/index.js';
import { DecisionReason, type Call, type Decision } from '../../pkg/policy/decision-types.js';
import { isValidMethodToken, normalizeRequestTarget } from '../../pkg/policy/normalize-path.js';

interface NaiveRule {
  callerModule: string;
  callerNamespace: string;
  mode: PolicyMode;
  policy: string;
  ruleIndex: number;
  methods: ReadonlySet<string>;
  paths: { re: RegExp; specificity: string; template: string }[];
  grpc: RegExp | undefined;
  /** '0' for named gRPC methods, '1' for `*`: an exact method beats a service wildcard. */
  grpcKey: string;
}

export type NaiveIndex = Map<string, NaiveRule[]>;

function templateRegex(template: string): RegExp {
  if (template === '/') return /^\/$/;
  const parts = template.slice(1).split('/');
  const rest = parts[parts.length - 1] === '**';
  const fixed = (rest ? parts.slice(0, -1) : parts)
    .map((s) => (s.startsWith('{') ? '/[^/]+' : '/' + s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${fixed}${rest ? '(?:/.*)?' : ''}$`);
}

function specificity(template: string): string {
  if (template === '/') return '';
  return template
    .slice(1)
    .split('/')
    .map((s) => (s === '**' ? '2' : s.startsWith('{') ? '1' : '0'))
    .join('');
}

export function buildNaive(policies: readonly ErpIntegrationPolicy[]): NaiveIndex {
  const index: NaiveIndex = new Map();
  for (const p of policies) {
    const list = index.get(p.spec.destination.module) ?? [];
    index.set(p.spec.destination.module, list);
    p.spec.rules.forEach((rule, ruleIndex) => {
      const methods = (rule.methods ?? []).includes('*') ? HTTP_METHODS : (rule.methods ?? []);
      const grpc = rule.grpc;
      list.push({
        callerModule: p.spec.source.module,
        callerNamespace: p.spec.source.namespace ?? p.metadata.namespace ?? 'default',
        mode: p.spec.mode ?? 'Enforce',
        policy: `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`,
        ruleIndex,
        methods: new Set(methods),
        paths: (rule.paths ?? []).map((t) => ({
          re: templateRegex(t),
          specificity: specificity(t),
          template: t,
        })),
        grpc:
          grpc === undefined
            ? undefined
            : new RegExp(
                `^/${grpc.service.replace(/\./g, '\\.')}/(${grpc.methods.includes('*') ? '[A-Za-z_][A-Za-z0-9_]*' : grpc.methods.join('|')})$`,
              ),
        grpcKey: grpc?.methods.includes('*') ? '1' : '0',
      });
    });
  }
  return index;
}

interface Hit {
  rule: NaiveRule;
  key: string;
  template: string;
}

function better(a: Hit, b: Hit | undefined): boolean {
  if (b === undefined) return true;
  if (a.key !== b.key) return a.key < b.key;
  if (a.rule.policy !== b.rule.policy) return a.rule.policy < b.rule.policy;
  if (a.rule.ruleIndex !== b.rule.ruleIndex) return a.rule.ruleIndex < b.rule.ruleIndex;
  return a.template < b.template;
}

const GRPC_PATH = /^\/[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\/[A-Za-z_][A-Za-z0-9_]*$/;

export function naiveDecide(index: NaiveIndex, destination: string, call: Call): Decision {
  let path: string;
  if (call.kind === 'grpc') {
    if (!GRPC_PATH.test(call.path))
      return { allowed: false, reason: DecisionReason.InvalidGrpcPath, message: 'bad gRPC path' };
    path = call.path;
  } else {
    if (!isValidMethodToken(call.method))
      return { allowed: false, reason: DecisionReason.InvalidMethod, message: 'bad method' };
    const n = normalizeRequestTarget(call.target);
    if (!n.ok)
      return {
        allowed: false,
        reason: DecisionReason.InvalidPath,
        pathRejection: n.rejection,
        message: n.message,
      };
    path = n.path;
  }
  let enforce: Hit | undefined;
  let audit: Hit | undefined;
  let known = false;
  let auditPolicy = false;
  for (const rule of index.get(destination) ?? []) {
    if (rule.callerModule !== call.callerModule || rule.callerNamespace !== call.callerNamespace)
      continue;
    known = true;
    if (rule.mode === 'Audit') auditPolicy = true;
    if (call.kind === 'grpc') {
      if (rule.grpc === undefined || !rule.grpc.test(path)) continue;
      const hit = { rule, key: rule.grpcKey, template: '' };
      if (rule.mode === 'Audit' ? better(hit, audit) : better(hit, enforce)) {
        if (rule.mode === 'Audit') audit = hit;
        else enforce = hit;
      }
      continue;
    }
    if (!rule.methods.has(call.method)) continue;
    for (const p of rule.paths) {
      if (!p.re.test(path)) continue;
      const hit = { rule, key: p.specificity, template: p.template };
      if (rule.mode === 'Audit') {
        if (better(hit, audit)) audit = hit;
      } else if (better(hit, enforce)) enforce = hit;
    }
  }
  const hit = enforce ?? audit;
  if (hit !== undefined) {
    return {
      allowed: true,
      reason: DecisionReason.Allowed,
      normalizedPath: path,
      matched: { policy: hit.rule.policy, ruleIndex: hit.rule.ruleIndex, mode: hit.rule.mode },
      message: `allowed by rule ${hit.rule.ruleIndex} of policy ${hit.rule.policy}`,
    };
  }
  if (!known)
    return {
      allowed: false,
      reason: DecisionReason.NoPolicy,
      normalizedPath: path,
      message: 'no policy',
    };
  if (auditPolicy) {
    return {
      allowed: true,
      reason: DecisionReason.AuditWouldDeny,
      wouldBe: DecisionReason.NoMatchingRule,
      normalizedPath: path,
      message: 'audit',
    };
  }
  return {
    allowed: false,
    reason: DecisionReason.NoMatchingRule,
    normalizedPath: path,
    message: 'no rule',
  };
}
