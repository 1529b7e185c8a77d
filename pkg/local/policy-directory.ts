/**
 * Local mode's policy source: a directory of policy files, watched. Every change (and a periodic
 * re-check, so that `validUntil` expiry takes effect without an edit) re-reads the directory,
 * verifies every policy with the same function the controller uses, and publishes a new state
 * when anything changed. A file that fails to parse is reported and the rest still load.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { readPolicyInputs } from '../files/policy-files.js';
import type { InputProblem } from '../files/policy-files.js';
import { collectPolicies, policyKey } from '../policy/collect.js';
import type { RejectedDocument } from '../policy/collect.js';
import { verifyPolicy } from '../policy/verify.js';
import type { ReviewerConfig, VerificationResult } from '../policy/verify.js';

export interface JudgedPolicy {
  key: string;
  origin: string;
  policy: ErpIntegrationPolicy;
  verification: VerificationResult;
}

export interface PolicyDirectoryState {
  /** Increases by one with every published change. */
  version: number;
  policies: JudgedPolicy[];
  /** The policies sidecars may enforce. */
  verified: ErpIntegrationPolicy[];
  rejected: RejectedDocument[];
  problems: InputProblem[];
}

export interface PolicyDirectoryOptions {
  dir: string;
  reviewers: ReviewerConfig;
  now: () => Date;
  /** Re-check interval (expiry, missed events); default 1 s. */
  recheckMs?: number;
  /** Coalesces bursts of file events; default 50 ms. */
  debounceMs?: number;
  onChange: (state: PolicyDirectoryState) => void;
  onError?: (error: unknown) => void;
}

export interface PolicyDirectoryWatcher {
  current(): PolicyDirectoryState;
  /** Re-reads now and resolves when the new state (if any) is published. */
  refresh(): Promise<PolicyDirectoryState>;
  close(): void;
}

/** A fingerprint of what sidecars and status depend on, to publish only real changes. */
function fingerprint(state: Omit<PolicyDirectoryState, 'version'>): string {
  return JSON.stringify([
    state.policies.map((p) => [p.key, p.verification.specHash, p.verification.condition, p.origin]),
    state.rejected.map((r) => [r.origin, r.errors]),
    state.problems,
  ]);
}

export async function watchPolicyDirectory(
  options: PolicyDirectoryOptions,
): Promise<PolicyDirectoryWatcher> {
  let state: PolicyDirectoryState = {
    version: 0,
    policies: [],
    verified: [],
    rejected: [],
    problems: [],
  };
  let lastFingerprint = '';
  let running: Promise<PolicyDirectoryState> | undefined;
  let again = false;
  let closed = false;

  const load = async (): Promise<PolicyDirectoryState> => {
    const inputs = await readPolicyInputs([options.dir]);
    const collected = collectPolicies(inputs.documents);
    const now = options.now();
    const policies = collected.policies.map(({ policy, origin }) => ({
      key: policyKey(policy),
      origin,
      policy,
      verification: verifyPolicy(policy, options.reviewers, now),
    }));
    const next = {
      policies,
      verified: policies.filter((p) => p.verification.verified).map((p) => p.policy),
      rejected: collected.rejected,
      problems: inputs.problems,
    };
    const print = fingerprint(next);
    if (print !== lastFingerprint) {
      lastFingerprint = print;
      state = { version: state.version + 1, ...next };
      options.onChange(state);
    }
    return state;
  };

  // One load at a time; a request during a load schedules exactly one more.
  const refresh = (): Promise<PolicyDirectoryState> => {
    if (running) {
      again = true;
      return running;
    }
    running = load()
      .catch((error: unknown) => {
        options.onError?.(error);
        return state;
      })
      .finally(() => {
        running = undefined;
        if (again && !closed) {
          again = false;
          void refresh();
        }
      });
    return running;
  };

  await refresh();
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(options.dir, { recursive: true }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void refresh(), options.debounceMs ?? 50);
    });
    watcher.on('error', (error) => options.onError?.(error));
  } catch (error: unknown) {
    // Some file systems cannot be watched; the periodic re-check still picks changes up.
    options.onError?.(error);
  }
  const interval = setInterval(() => void refresh(), options.recheckMs ?? 1_000);
  interval.unref();

  return {
    current: () => state,
    refresh,
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(interval);
      watcher?.close();
    },
  };
}
