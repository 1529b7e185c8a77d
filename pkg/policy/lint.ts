/**
 * The least-privilege lint. Each check is a small pure function named after what it finds; a
 * finding has a stable code (docs/reference/codes.md), a severity and the field it is about.
 * Errors block verification (the Verified condition becomes LintFailed); warnings are reported.
 */
import { ANY_METHOD, HTTP_METHODS } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy, PolicyRule } from '../api/v1alpha1/index.js';
import { formatDuration, parseDuration } from './duration.js';
import { parseSelector, selectorCovers } from './selector.js';
import type { SelectorStep } from './selector.js';

export type Severity = 'error' | 'warning';

export const LintCode = {
  /** A rule allows every method on every path. */
  AllMethodsAllPaths: 'AllMethodsAllPaths',
  /** A path wildcard with no literal prefix (`/**`, `/{x}/**`) swallows the whole API. */
  WildcardWholeApi: 'WildcardWholeApi',
  /** A path wildcard under a short prefix (`/api/**`) covers most of an API. */
  BroadWildcard: 'BroadWildcard',
  /** `methods: ['*']` on specific paths: writes are allowed where reads may be meant. */
  AllMethods: 'AllMethods',
  /** A gRPC rule allows every method of a service. */
  AllGrpcMethods: 'AllGrpcMethods',
  /** No `rateLimit`. */
  NoRateLimit: 'NoRateLimit',
  /** certificateTTL above the configured maximum. */
  CertificateTtlTooLong: 'CertificateTtlTooLong',
  /** No `validUntil`: the approval would never need renewal. */
  NoValidUntil: 'NoValidUntil',
  /** `validUntil` has passed. */
  ValidUntilPassed: 'ValidUntilPassed',
  /** `validUntil` further away than the configured maximum validity. */
  ValidUntilTooFar: 'ValidUntilTooFar',
  /** A mask or tokenize selector that can never match (inside a value another selector replaces). */
  SelectorNeverMatches: 'SelectorNeverMatches',
  /** Two rules allow exactly the same calls. */
  DuplicateRule: 'DuplicateRule',
  /** Every call a rule allows is already allowed by another rule. */
  ShadowedRule: 'ShadowedRule',
  /** A path of a rule is covered by another path of the same rule. */
  ShadowedPath: 'ShadowedPath',
  /** Source and destination are the same module. */
  SelfIntegration: 'SelfIntegration',
} as const;
export type LintCode = (typeof LintCode)[keyof typeof LintCode];

export interface LintFinding {
  code: LintCode;
  severity: Severity;
  field: string;
  message: string;
}

export interface LintOptions {
  now: Date;
  /** Longest allowed certificateTTL; default 24h. */
  maxCertificateTtlMs?: number;
  /** Longest allowed time from now to validUntil; default 400 days. */
  maxValidityMs?: number;
}

export const DEFAULT_MAX_CERTIFICATE_TTL_MS = 24 * 3_600_000;
export const DEFAULT_MAX_VALIDITY_MS = 400 * 24 * 3_600_000;

type Check = (policy: ErpIntegrationPolicy, options: Required<LintOptions>) => LintFinding[];

const finding = (
  code: LintCode,
  severity: Severity,
  field: string,
  message: string,
): LintFinding => ({
  code,
  severity,
  field,
  message,
});

/** Path template segments; `**` only ever last (validation guarantees it). */
const segmentsOf = (path: string): string[] => (path === '/' ? [] : path.slice(1).split('/'));
const isParam = (segment: string): boolean => segment.startsWith('{');

/** Number of literal segments before the first parameter or `**`. */
function literalPrefixLength(path: string): number {
  const segments = segmentsOf(path);
  const firstWild = segments.findIndex((s) => s === '**' || isParam(s));
  return firstWild === -1 ? segments.length : firstWild;
}

/** True when every concrete path `inner` matches is also matched by `outer`. */
export function pathCovers(outer: string, inner: string): boolean {
  const o = segmentsOf(outer);
  const i = segmentsOf(inner);
  for (let k = 0; k < o.length; k++) {
    const os = o[k] ?? '';
    if (os === '**') return true;
    const is = i[k];
    if (is === undefined || is === '**') return false;
    if (isParam(os)) continue;
    if (isParam(is) || is !== os) return false;
  }
  return o.length === i.length;
}

const methodsOf = (rule: PolicyRule): Set<string> =>
  new Set((rule.methods ?? []).flatMap((m) => (m === ANY_METHOD ? [...HTTP_METHODS] : [m])));

function ruleCovers(outer: PolicyRule, inner: PolicyRule): boolean {
  if (outer.grpc || inner.grpc) {
    if (!outer.grpc || !inner.grpc || outer.grpc.service !== inner.grpc.service) return false;
    if (outer.grpc.methods.includes(ANY_METHOD)) return true;
    return inner.grpc.methods.every((m) => m !== ANY_METHOD && outer.grpc?.methods.includes(m));
  }
  const outerMethods = methodsOf(outer);
  if (![...methodsOf(inner)].every((m) => outerMethods.has(m))) return false;
  return (inner.paths ?? []).every((p) => (outer.paths ?? []).some((q) => pathCovers(q, p)));
}

const checkBroadRules: Check = (policy) =>
  policy.spec.rules.flatMap((rule, r) => {
    if (rule.grpc) {
      return rule.grpc.methods.includes(ANY_METHOD)
        ? [
            finding(
              LintCode.AllGrpcMethods,
              'warning',
              `spec.rules[${r}].grpc.methods`,
              `rule ${r} allows every method of ${rule.grpc.service}; list the methods the caller needs`,
            ),
          ]
        : [];
    }
    const allMethods = rule.methods?.includes(ANY_METHOD) ?? false;
    const out: LintFinding[] = [];
    (rule.paths ?? []).forEach((path, p) => {
      const field = `spec.rules[${r}].paths[${p}]`;
      const prefix = literalPrefixLength(path);
      const wildcard = path.endsWith('/**');
      if (wildcard && prefix === 0 && allMethods) {
        out.push(
          finding(
            LintCode.AllMethodsAllPaths,
            'error',
            field,
            `rule ${r} allows every method on every path (${path}); name the methods and paths the integration needs`,
          ),
        );
      } else if (wildcard && prefix === 0) {
        out.push(
          finding(
            LintCode.WildcardWholeApi,
            'error',
            field,
            `${path} matches the whole API of the destination; narrow it to the resources the integration needs`,
          ),
        );
      } else if (wildcard && prefix <= 2) {
        out.push(
          finding(
            LintCode.BroadWildcard,
            'warning',
            field,
            `${path} covers everything below a short prefix; prefer explicit resource paths`,
          ),
        );
      }
    });
    if (allMethods && !out.some((f) => f.code === LintCode.AllMethodsAllPaths)) {
      out.push(
        finding(
          LintCode.AllMethods,
          'warning',
          `spec.rules[${r}].methods`,
          `rule ${r} allows every method, writes included; list the methods the caller needs`,
        ),
      );
    }
    return out;
  });

const checkRateLimit: Check = (policy) =>
  policy.spec.rateLimit
    ? []
    : [
        finding(
          LintCode.NoRateLimit,
          'error',
          'spec.rateLimit',
          'no rate limit: set spec.rateLimit.requestsPerSecond so one misbehaving caller cannot flood the destination',
        ),
      ];

const checkCertificateTtl: Check = (policy, options) => {
  const ttl = parseDuration(policy.spec.certificateTTL ?? '1h');
  if (ttl === undefined || ttl <= options.maxCertificateTtlMs) return [];
  return [
    finding(
      LintCode.CertificateTtlTooLong,
      'error',
      'spec.certificateTTL',
      `certificateTTL ${policy.spec.certificateTTL ?? ''} is above the maximum of ${formatDuration(options.maxCertificateTtlMs)}`,
    ),
  ];
};

const checkValidUntil: Check = (policy, options) => {
  const text = policy.spec.validUntil;
  if (text === undefined) {
    return [
      finding(
        LintCode.NoValidUntil,
        'error',
        'spec.validUntil',
        'no validUntil: set the date after which the approval must be renewed',
      ),
    ];
  }
  const until = Date.parse(text);
  if (until <= options.now.getTime()) {
    return [
      finding(
        LintCode.ValidUntilPassed,
        'error',
        'spec.validUntil',
        `validUntil ${text} has passed; renew the review and set a new date`,
      ),
    ];
  }
  if (until - options.now.getTime() > options.maxValidityMs) {
    return [
      finding(
        LintCode.ValidUntilTooFar,
        'warning',
        'spec.validUntil',
        `validUntil ${text} is more than ${Math.round(options.maxValidityMs / 86_400_000)} days away; reviews should be renewed at least yearly`,
      ),
    ];
  }
  return [];
};

const checkSelectors: Check = (policy) => {
  const dp = policy.spec.dataProtection;
  if (!dp) return [];
  // Masks are applied before tokenization: a tokenize selector inside a masked value never matches.
  const entries: { field: string; text: string; steps: SelectorStep[] }[] = [];
  for (const key of ['mask', 'tokenize'] as const) {
    (dp[key] ?? []).forEach((text, i) => {
      const parsed = parseSelector(text);
      if (parsed.ok)
        entries.push({ field: `spec.dataProtection.${key}[${i}]`, text, steps: parsed.steps });
    });
  }
  const out: LintFinding[] = [];
  entries.forEach((inner, i) => {
    const outer = entries.find(
      (candidate, j) => j < i && selectorCovers(candidate.steps, inner.steps),
    );
    if (outer) {
      out.push(
        finding(
          LintCode.SelectorNeverMatches,
          'error',
          inner.field,
          `${inner.text} can never match: ${outer.field} (${outer.text}) already replaces the value it points into`,
        ),
      );
    }
  });
  return out;
};

const checkRuleOverlap: Check = (policy) => {
  const rules = policy.spec.rules;
  const out: LintFinding[] = [];
  rules.forEach((rule, i) => {
    const twin = rules.findIndex(
      (other, j) => j < i && ruleCovers(other, rule) && ruleCovers(rule, other),
    );
    if (twin !== -1) {
      out.push(
        finding(
          LintCode.DuplicateRule,
          'error',
          `spec.rules[${i}]`,
          `rule ${i} allows exactly what rule ${twin} allows; remove one`,
        ),
      );
      return;
    }
    const shadow = rules.findIndex(
      (other, j) => j !== i && ruleCovers(other, rule) && !ruleCovers(rule, other),
    );
    if (shadow !== -1) {
      out.push(
        finding(
          LintCode.ShadowedRule,
          'warning',
          `spec.rules[${i}]`,
          `everything rule ${i} allows is already allowed by rule ${shadow}`,
        ),
      );
    }
    (rule.paths ?? []).forEach((path, p) => {
      const covering = (rule.paths ?? []).findIndex(
        (other, q) => q !== p && pathCovers(other, path) && !(pathCovers(path, other) && q > p),
      );
      if (covering !== -1) {
        out.push(
          finding(
            LintCode.ShadowedPath,
            'warning',
            `spec.rules[${i}].paths[${p}]`,
            `${path} is already matched by ${(rule.paths ?? [])[covering] ?? ''} in the same rule`,
          ),
        );
      }
    });
  });
  return out;
};

const checkSelfIntegration: Check = (policy) => {
  const { source, destination } = policy.spec;
  const sameNamespace =
    source.namespace === undefined || source.namespace === policy.metadata.namespace;
  return source.module === destination.module && sameNamespace
    ? [
        finding(
          LintCode.SelfIntegration,
          'error',
          'spec.destination.module',
          `source and destination are both ${source.module}: a module does not need a policy to call itself`,
        ),
      ]
    : [];
};

const CHECKS: readonly Check[] = [
  checkSelfIntegration,
  checkBroadRules,
  checkRateLimit,
  checkCertificateTtl,
  checkValidUntil,
  checkSelectors,
  checkRuleOverlap,
];

/** Runs every check on a policy that passed validation. Errors first, then warnings. */
export function lintPolicy(policy: ErpIntegrationPolicy, options: LintOptions): LintFinding[] {
  const resolved: Required<LintOptions> = {
    now: options.now,
    maxCertificateTtlMs: options.maxCertificateTtlMs ?? DEFAULT_MAX_CERTIFICATE_TTL_MS,
    maxValidityMs: options.maxValidityMs ?? DEFAULT_MAX_VALIDITY_MS,
  };
  const findings = CHECKS.flatMap((check) => check(policy, resolved));
  return [
    ...findings.filter((f) => f.severity === 'error'),
    ...findings.filter((f) => f.severity === 'warning'),
  ];
}
