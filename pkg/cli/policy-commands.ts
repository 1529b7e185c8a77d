/**
 * Offline commands on policy files: lint, hash, verify, check. They read files through pkg/files
 * and decide through the same pure functions the controller, webhook and sidecar use.
 */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { readPolicyInputs } from '../files/policy-files.js';
import { collectPolicies, policyKey } from '../policy/collect.js';
import type { CollectedPolicies, LoadedPolicy } from '../policy/collect.js';
import { compilePolicies } from '../policy/compile.js';
import { decide } from '../policy/decide.js';
import type { Call } from '../policy/decision-types.js';
import { canonicalJson, canonicalSpec, specHash } from '../policy/hash.js';
import { lintPolicy } from '../policy/lint.js';
import type { LintFinding } from '../policy/lint.js';
import { verifyPolicy } from '../policy/verify.js';
import type { ReviewerConfig, VerificationResult } from '../policy/verify.js';
import { listFlag, outputFlag, parseFlags, requiredFlag, stringFlag, timeFlag } from './args.js';
import type { ParsedArgs } from './args.js';
import { ExitCode, formatTable } from './io.js';
import type { CliIo } from './io.js';

/** Reviewer groups when neither --reviewers nor ERPGUARD_REVIEWERS is set. */
export const DEFAULT_REVIEWER_GROUP = 'erp-reviewers';

export function reviewersFrom(parsed: ParsedArgs, io: CliIo): ReviewerConfig {
  const groups = listFlag(parsed, 'reviewers') ??
    io.env['ERPGUARD_REVIEWERS']
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean) ?? [DEFAULT_REVIEWER_GROUP];
  const users = listFlag(parsed, 'reviewer-users');
  return users ? { groups, users } : { groups };
}

async function loadInputs(
  paths: readonly string[],
  io: CliIo,
): Promise<CollectedPolicies & { inputErrors: number }> {
  if (paths.length === 0)
    throw new ErpguardError(ErrorCode.InvalidArgument, 'name at least one FILE or DIR');
  const inputs = await readPolicyInputs(paths);
  for (const problem of inputs.problems) io.stderr(`error: ${problem.code}: ${problem.message}\n`);
  const collected = collectPolicies(inputs.documents);
  return { ...collected, inputErrors: inputs.problems.length };
}

interface LintRow {
  policy: string;
  origin: string;
  severity: 'error' | 'warning';
  code: string;
  field: string;
  message: string;
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

export async function runLint(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(args, {
    output: { type: 'string', short: 'o' },
    now: { type: 'string' },
  });
  const output = outputFlag(parsed);
  const now = timeFlag(parsed, 'now', io.now());
  const { policies, rejected, inputErrors } = await loadInputs(parsed.positionals, io);
  const rows: LintRow[] = [];
  for (const doc of rejected) {
    for (const e of doc.errors) {
      rows.push({
        policy: doc.name ?? '-',
        origin: doc.origin,
        severity: 'error',
        code: e.code,
        field: e.field,
        message: e.message,
      });
    }
  }
  for (const { policy, origin } of policies) {
    const findings: LintFinding[] = lintPolicy(policy, { now });
    for (const f of findings) {
      rows.push({
        policy: policyKey(policy),
        origin,
        severity: f.severity,
        code: f.code,
        field: f.field,
        message: f.message,
      });
    }
  }
  const errors = rows.filter((r) => r.severity === 'error').length + inputErrors;
  if (output === 'json') {
    io.stdout(
      JSON.stringify(
        {
          policies: policies.length + rejected.length,
          errors,
          warnings: rows.filter((r) => r.severity === 'warning').length,
          findings: rows,
        },
        null,
        2,
      ) + '\n',
    );
  } else if (rows.length > 0) {
    io.stdout(
      formatTable(
        ['POLICY', 'SEVERITY', 'CODE', 'FIELD', 'MESSAGE'],
        rows.map((r) => [
          r.policy,
          r.severity,
          r.code,
          r.field,
          r.message.replace(`${r.field}: `, ''),
        ]),
      ),
    );
  }
  if (output === 'table') {
    const checked = policies.length + rejected.length;
    const warnings = rows.length - rows.filter((r) => r.severity === 'error').length;
    io.stderr(
      `${plural(checked, 'policy', 'policies')} checked: ${plural(errors, 'error', 'errors')}, ${plural(warnings, 'warning', 'warnings')}\n`,
    );
  }
  return errors > 0 ? ExitCode.Findings : ExitCode.Ok;
}

export async function runHash(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(args, {
    output: { type: 'string', short: 'o' },
    canonical: { type: 'boolean' },
  });
  const output = outputFlag(parsed);
  const { policies, rejected, inputErrors } = await loadInputs(parsed.positionals, io);
  reportRejected(rejected, io);
  const rows = policies.map(({ policy, origin }) => ({
    policy: policyKey(policy),
    origin,
    specHash: specHash(policy.spec),
    ...(parsed.values['canonical'] === true
      ? { canonical: canonicalJson(canonicalSpec(policy.spec)) }
      : {}),
  }));
  if (output === 'json') io.stdout(JSON.stringify(rows, null, 2) + '\n');
  else {
    io.stdout(
      formatTable(
        ['POLICY', 'SPEC HASH'],
        rows.map((r) => [r.policy, r.specHash]),
      ),
    );
    for (const r of rows) if (r.canonical !== undefined) io.stdout(`${r.policy}: ${r.canonical}\n`);
  }
  return rejected.length + inputErrors > 0 ? ExitCode.Findings : ExitCode.Ok;
}

function reportRejected(rejected: CollectedPolicies['rejected'], io: CliIo): void {
  for (const doc of rejected) {
    for (const e of doc.errors) io.stderr(`error: ${doc.origin}: ${e.message}\n`);
  }
}

export async function runVerify(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(args, {
    output: { type: 'string', short: 'o' },
    reviewers: { type: 'string' },
    'reviewer-users': { type: 'string' },
    now: { type: 'string' },
  });
  const output = outputFlag(parsed);
  const now = timeFlag(parsed, 'now', io.now());
  const reviewers = reviewersFrom(parsed, io);
  const { policies, rejected, inputErrors } = await loadInputs(parsed.positionals, io);
  reportRejected(rejected, io);
  const results = policies.map(({ policy, origin }) => ({
    policy,
    origin,
    result: verifyPolicy(policy, reviewers, now),
  }));
  if (output === 'json') {
    io.stdout(
      JSON.stringify(
        results.map(({ policy, origin, result }) => ({
          policy: policyKey(policy),
          origin,
          specHash: result.specHash,
          condition: result.condition,
        })),
        null,
        2,
      ) + '\n',
    );
  } else {
    io.stdout(
      formatTable(
        ['POLICY', 'SOURCE', 'DESTINATION', 'VERIFIED', 'REASON', 'MESSAGE'],
        results.map(({ policy, result }) => [
          policyKey(policy),
          policy.spec.source.module,
          policy.spec.destination.module,
          result.condition.status,
          result.condition.reason,
          result.condition.message,
        ]),
      ),
    );
  }
  const unverified = results.filter((r) => !r.result.verified).length;
  return unverified + rejected.length + inputErrors > 0 ? ExitCode.Findings : ExitCode.Ok;
}

const SPIFFE = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** `--from`: a module name, or a SPIFFE ID whose ServiceAccount names the module (local-mode convention). */
export function parseCaller(
  text: string,
  defaultNamespace: string,
  trustDomain = 'cluster.local',
): { module: string; namespace: string } {
  const spiffe = SPIFFE.exec(text);
  if (spiffe) {
    // The sidecar refuses peers of another trust domain; so does check.
    if (spiffe[1] !== trustDomain) {
      throw new ErpguardError(
        ErrorCode.InvalidArgument,
        `--from ${JSON.stringify(text)} is not in trust domain ${JSON.stringify(trustDomain)} (set --trust-domain if yours differs)`,
      );
    }
    return { namespace: spiffe[2] ?? defaultNamespace, module: spiffe[3] ?? '' };
  }
  if (text.startsWith('spiffe:')) {
    throw new ErpguardError(
      ErrorCode.InvalidArgument,
      `--from ${JSON.stringify(text)} is not a workload SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`,
    );
  }
  return { module: text, namespace: defaultNamespace };
}

function callFrom(parsed: ParsedArgs, caller: { module: string; namespace: string }): Call {
  const grpc = stringFlag(parsed, 'grpc');
  const method = stringFlag(parsed, 'method');
  const path = stringFlag(parsed, 'path');
  if (grpc !== undefined) {
    if (method !== undefined || path !== undefined)
      throw new ErpguardError(
        ErrorCode.InvalidArgument,
        'use either --grpc or --method with --path, not both',
      );
    return {
      kind: 'grpc',
      callerModule: caller.module,
      callerNamespace: caller.namespace,
      path: grpc,
    };
  }
  if (method === undefined || path === undefined)
    throw new ErpguardError(
      ErrorCode.InvalidArgument,
      'name the call: --method M --path P, or --grpc /package.Service/Method',
    );
  return {
    kind: 'http',
    callerModule: caller.module,
    callerNamespace: caller.namespace,
    method,
    target: path,
  };
}

export async function runCheck(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(
    args,
    {
      policies: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      grpc: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      reviewers: { type: 'string' },
      'reviewer-users': { type: 'string' },
      'assume-approved': { type: 'boolean' },
      'trust-domain': { type: 'string' },
      now: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
    false,
  );
  const output = outputFlag(parsed);
  const policiesDir = requiredFlag(parsed, 'policies');
  const caller = parseCaller(
    requiredFlag(parsed, 'from'),
    stringFlag(parsed, 'namespace') ?? 'default',
    stringFlag(parsed, 'trust-domain') ?? 'cluster.local',
  );
  const destination = requiredFlag(parsed, 'to');
  const call = callFrom(parsed, caller);
  const now = timeFlag(parsed, 'now', io.now());
  const reviewers = reviewersFrom(parsed, io);
  const assumeApproved = parsed.values['assume-approved'] === true;
  const { policies, rejected } = await loadInputs([policiesDir], io);
  reportRejected(rejected, io);

  const relevant = policies.filter(({ policy }) => policy.spec.destination.module === destination);
  const judged = relevant.map((loaded) => ({
    ...loaded,
    result: verifyPolicy(loaded.policy, reviewers, now, assumeApproved ? { approval: null } : {}),
  }));
  const enforced: ErpIntegrationPolicy[] = judged
    .filter((j) => j.result.verified || (assumeApproved && isOnlyUnapproved(j.result)))
    .map((j) => j.policy);
  const decision = decide(
    compilePolicies(enforced, { destinationModule: destination }),
    destination,
    call,
  );
  const skipped = judged.filter(
    (j) => !enforced.includes(j.policy) && j.policy.spec.source.module === caller.module,
  );

  if (output === 'json') {
    io.stdout(
      JSON.stringify({ decision, unverifiedPolicies: skipped.map(describeSkipped) }, null, 2) +
        '\n',
    );
  } else {
    io.stdout(formatDecision(decision, destination, call));
    for (const s of skipped) {
      const d = describeSkipped(s);
      io.stdout(
        `note: policy ${d.policy} (${d.origin}) is not enforced: ${d.reason}: ${d.message}\n`,
      );
    }
  }
  return decision.allowed ? ExitCode.Ok : ExitCode.Denied;
}

/** With --assume-approved, a policy counts if approval is the only thing it lacks. */
function isOnlyUnapproved(result: VerificationResult): boolean {
  return result.condition.reason === 'NotApproved';
}

function describeSkipped(s: LoadedPolicy & { result: VerificationResult }): {
  policy: string;
  origin: string;
  reason: string;
  message: string;
} {
  return {
    policy: policyKey(s.policy),
    origin: s.origin,
    reason: s.result.condition.reason,
    message: s.result.condition.message,
  };
}

function formatDecision(
  decision: ReturnType<typeof decide>,
  destination: string,
  call: Call,
): string {
  const what = call.kind === 'grpc' ? `gRPC ${call.path}` : `${call.method} ${call.target}`;
  const lines = [
    `${decision.allowed ? 'ALLOWED' : 'DENIED'}: ${call.callerModule} -> ${destination} ${what}`,
    `  reason:   ${decision.reason}${decision.pathRejection ? ` (${decision.pathRejection})` : ''}${decision.wouldBe ? ` (would be ${decision.wouldBe} in Enforce mode)` : ''}`,
    `  message:  ${decision.message}`,
  ];
  if (decision.matched)
    lines.push(
      `  policy:   ${decision.matched.policy} rule ${decision.matched.ruleIndex} (${decision.matched.mode})`,
    );
  if (decision.rateLimit)
    lines.push(
      `  rate:     ${decision.rateLimit.requestsPerSecond}/s, burst ${decision.rateLimit.burst ?? decision.rateLimit.requestsPerSecond}`,
    );
  const dp = decision.dataProtection;
  if (dp?.mask?.length) lines.push(`  masked:   ${dp.mask.join(', ')}`);
  if (dp?.tokenize?.length) lines.push(`  tokenized: ${dp.tokenize.join(', ')}`);
  return lines.join('\n') + '\n';
}
