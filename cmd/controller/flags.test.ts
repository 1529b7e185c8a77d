import { describe, expect, it } from '@jest/globals';

import { parseControllerConfig } from './flags.js';

describe('parseControllerConfig', () => {
  it('has production defaults', () => {
    const c = parseControllerConfig([], {});
    expect(c).toMatchObject({
      namespace: 'erpguard',
      inCluster: false,
      leaderElect: true,
      leaseName: 'erpguard-controller',
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      adminHost: '0.0.0.0',
      adminPort: 15020,
      workers: 4,
      resyncPeriodMs: 600_000,
      networkPolicies: true,
      adminIngressNamespaces: [],
      reviewerGroups: [],
      logLevel: 'info',
    });
    expect(c.identity).toBeUndefined();
  });

  it('reads the environment, and flags win over it', () => {
    const env = {
      POD_NAMESPACE: 'erpguard-system',
      POD_NAME: 'erpguard-controller-7c9d',
      ERPGUARD_REVIEWER_GROUPS: 'erp-reviewers, security',
    };
    expect(parseControllerConfig([], env)).toMatchObject({
      namespace: 'erpguard-system',
      identity: 'erpguard-controller-7c9d',
      reviewerGroups: ['erp-reviewers', 'security'],
    });
    expect(
      parseControllerConfig(
        ['--namespace', 'ops', '--reviewer-groups', 'x', '--identity', 'me'],
        env,
      ),
    ).toMatchObject({ namespace: 'ops', reviewerGroups: ['x'], identity: 'me' });
  });

  it('parses every flag', () => {
    const c = parseControllerConfig(
      [
        '--kubeconfig=/tmp/kc',
        '--context=dev',
        '--watch-namespace=erp',
        '--reviewer-users=alice,bob',
        '--leader-elect=false',
        '--lease-duration=30s',
        '--renew-deadline=20s',
        '--retry-period=5s',
        '--admin-address=127.0.0.1:0',
        '--workers=8',
        '--resync-period=1h',
        '--network-policies=false',
        '--admin-ingress-namespaces=monitoring',
        '--shutdown-timeout=30s',
        '--log-level=debug',
      ],
      {},
    );
    expect(c).toMatchObject({
      kubeconfig: '/tmp/kc',
      context: 'dev',
      watchNamespace: 'erp',
      reviewerUsers: ['alice', 'bob'],
      leaderElect: false,
      leaseDurationMs: 30_000,
      renewDeadlineMs: 20_000,
      retryPeriodMs: 5_000,
      adminHost: '127.0.0.1',
      adminPort: 0,
      workers: 8,
      resyncPeriodMs: 3_600_000,
      networkPolicies: false,
      adminIngressNamespaces: ['monitoring'],
      shutdownTimeoutMs: 30_000,
      logLevel: 'debug',
    });
  });

  it.each([
    [['--namespace', 'Bad_NS'], /--namespace: "Bad_NS" is not a namespace name/],
    [['--leader-elect', 'yes'], /--leader-elect: must be 'true' or 'false'/],
    [['--lease-duration', 'soon'], /--lease-duration: must be a positive duration/],
    [
      ['--renew-deadline', '20s'],
      /--renew-deadline: need retry-period < renew-deadline < lease-duration/,
    ],
    [['--admin-address', 'localhost:99999'], /--admin-address: must be HOST:PORT/],
    [['--workers', '0'], /--workers: must be an integer from 1 to 64/],
    [['--log-level', 'loud'], /--log-level: unknown level/],
    [['--admin-ingress-namespaces', 'ok,NOT OK'], /--admin-ingress-namespaces/],
    [['--in-cluster', '--kubeconfig', '/x'], /--in-cluster: cannot be combined/],
    [['--frobnicate'], /frobnicate/],
    [['positional'], /positional/],
  ])('%j is rejected naming the flag', (args, message) => {
    expect(() => parseControllerConfig(args, {})).toThrow(message);
  });
});
