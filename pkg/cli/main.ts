/**
 * The erpguard CLI (also installed as `kubectl-erpguard`). Pure dispatch over injected I/O; cmd/
 * supplies the real streams, clock and cluster client.
 */
import { describeError, ErpguardError, ErrorCode } from '../errors/errors.js';
import { ExitCode } from './io.js';
import type { CliIo } from './io.js';
import { runCheck, runHash, runLint, runVerify } from './policy-commands.js';
import { runAdmit } from './admit-command.js';
import type { ClusterApiFactory } from './cluster-api.js';
import { runApprove, runAudit, runStatus } from './cluster-commands.js';

export type CommandRunner = (args: readonly string[], io: CliIo) => Promise<ExitCode>;

export interface Command {
  summary: string;
  usage: string;
  run: CommandRunner;
}

const COMMON = `
Common flags:
  -h, --help     show help for the command
      --debug    print stack traces on errors
`;

export const POLICY_COMMANDS: Record<string, Command> = {
  lint: {
    summary: 'Least-privilege lint of policy files',
    usage: `erpguard lint FILE|DIR... [-o table|json] [--now TIME]

Validates every ErpIntegrationPolicy in the files (directories are walked for .yaml, .yml, .json)
and runs the least-privilege lint. Prints one row per finding. Exit 1 when there are errors.`,
    run: runLint,
  },
  hash: {
    summary: 'Print the canonical spec hash of each policy',
    usage: `erpguard hash FILE|DIR... [-o table|json] [--canonical]

The spec hash that approvals are bound to (docs/reference/spec-hash.md). --canonical also prints
the canonical JSON that was hashed.`,
    run: runHash,
  },
  verify: {
    summary: 'Print the Verified condition of each policy',
    usage: `erpguard verify FILE|DIR... [--reviewers GROUPS] [--reviewer-users USERS] [--now TIME] [-o table|json]

Runs the same verification as the controller: lint, approval bound to the current spec hash,
approver in a reviewer group and not the last author, validUntil not passed. Reviewer groups
default to $ERPGUARD_REVIEWERS or 'erp-reviewers'. Exit 1 when any policy is not verified.`,
    run: runVerify,
  },
  check: {
    summary: 'Decide one call against a directory of policies',
    usage: `erpguard check --policies DIR --from SPIFFE_ID|MODULE --to MODULE
                 (--method M --path P | --grpc /package.Service/Method)
                 [-n NAMESPACE] [--trust-domain TD] [--reviewers GROUPS] [--assume-approved] [--now TIME] [-o table|json]

Only verified policies are enforced, as in the sidecar; --assume-approved also counts policies
whose only gap is a missing approval (to test a policy before review). A SPIFFE ID's service
account names the caller's module. Exit 0 allowed, 3 denied.`,
    run: runCheck,
  },
  admit: {
    summary: 'Run AdmissionReviews or manifests through the admission webhook offline',
    usage: `erpguard admit (--review FILE | --manifest FILE) --policies DIR [-n NAMESPACE]
               [--namespace-labels erpguard.io/enforce=true] [--service-accounts FILE]
               [--user NAME --groups G1,G2] [--reviewers GROUPS] [--now TIME] [-o table|json]

Runs the mutating then the validating handler of the webhook, exactly as the API server would
call them, and prints the verdict per object (-o json: the AdmissionReview responses and the
patched objects). --manifest wraps each object (Deployment, Pod, Job, ...) in a CREATE review.
Exit 0 when everything is admitted, 3 when something is rejected.`,
    run: runAdmit,
  },
};

const CONNECTION_HELP = `
Cluster flags (as kubectl): --kubeconfig FILE (default $KUBECONFIG, ~/.kube/config),
  --context NAME, -n/--namespace NS (default: the context's namespace).`;

/** Commands that talk to a cluster through `factory` (pkg/kube in the real binary). */
export function clusterCommands(factory: ClusterApiFactory): Record<string, Command> {
  return {
    approve: {
      summary: 'Approve a policy in the cluster as the current user',
      usage: `erpguard approve NAME [-n NAMESPACE] [--dry-run]     (kubectl erpguard approve NAME)

Records an approval bound to the policy's current spec hash, as the user the API server
authenticates. Refused locally when the spec fails validation or lint, or when you are its last
author; the admission webhook enforces the same and also that you are a reviewer. The write is
guarded by resourceVersion: if the spec changed since it was read, nothing is written.
${CONNECTION_HELP}`,
      run: runApprove(factory),
    },
    status: {
      summary: 'Policies with their Verified state, reason and dependent workloads',
      usage: `erpguard status [-n NAMESPACE | -A] [-o table|json]
${CONNECTION_HELP}`,
      run: runStatus(factory),
    },
    audit: {
      summary: 'Workloads without verified policies, expiring approvals, over-broad rules',
      usage: `erpguard audit [-n NAMESPACE | -A] [--expiring-within 30d] [-o table|json]

Findings: IntegrationWithoutVerifiedPolicy and WorkloadWithoutModule (errors, exit 1),
ApprovalExpiringSoon, PolicyNotReconciled and OverBroadRule (warnings).
${CONNECTION_HELP}`,
      run: runAudit(factory),
    },
  };
}

function topHelp(commands: Record<string, Command>): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const list = Object.entries(commands)
    .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
    .join('\n');
  return `erpguard: zero-trust policies for the traffic between ERP modules

Usage: erpguard COMMAND [flags]   (also: kubectl erpguard COMMAND)

Commands:
${list}

Run 'erpguard COMMAND --help' for a command's flags.
`;
}

/** Runs the CLI; never throws. Errors go to stderr as one line (stack with --debug). */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  commands: Record<string, Command> = POLICY_COMMANDS,
): Promise<number> {
  const [name, ...rest] = argv;
  const debug = rest.includes('--debug');
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(topHelp(commands));
    return name === undefined ? ExitCode.Usage : ExitCode.Ok;
  }
  const command = commands[name];
  if (!command) {
    io.stderr(`error: unknown command ${JSON.stringify(name)}; run 'erpguard --help'\n`);
    return ExitCode.Usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(`${command.usage}\n${COMMON}`);
    return ExitCode.Ok;
  }
  try {
    return await command.run(rest, io);
  } catch (error: unknown) {
    io.stderr(`error: ${describeError(error)}\n`);
    if (debug && error instanceof Error && error.stack) io.stderr(`${error.stack}\n`);
    const usage = error instanceof ErpguardError && error.code === ErrorCode.InvalidArgument;
    return usage ? ExitCode.Usage : ExitCode.Findings;
  }
}
