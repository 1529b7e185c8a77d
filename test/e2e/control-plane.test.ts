/**
 * Starts the real etcd + kube-apiserver harness and checks the pieces erpguard relies on:
 * admin access, TokenRequest with audience "erpguard" and TokenReview of that token, and
 * certificate users in groups. Skipped only when ERPGUARD_SKIP_CLUSTER=1.
 *
 * The first run on a machine may build the binaries (hack/build-tools.sh, tens of minutes).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import { startControlPlane } from '../harness/control-plane.js';
import type { ControlPlane } from '../harness/control-plane.js';

const skip = process.env['ERPGUARD_SKIP_CLUSTER'] === '1';
if (skip) {
  // eslint-disable-next-line no-console -- the skip must be visible in the test output
  console.warn(
    'ERPGUARD_SKIP_CLUSTER=1: skipping control-plane integration tests (no etcd/kube-apiserver)',
  );
}
const describeCluster = skip ? describe.skip : describe;

interface TokenReviewStatus {
  authenticated?: boolean;
  audiences?: string[];
  user?: { username?: string; groups?: string[] };
  error?: string;
}

describeCluster('control plane harness', () => {
  let plane: ControlPlane | undefined;
  const cp = (): ControlPlane => {
    if (plane === undefined) throw new Error('control plane did not start (see beforeAll)');
    return plane;
  };
  const ns = `cp-test-${Date.now().toString(36)}`;

  beforeAll(async () => {
    plane = await startControlPlane();
  }, 60 * 60_000); // a cold hack/build-tools.sh run happens here

  afterAll(async () => {
    if (plane?.external === true) {
      // Only a real cluster has a namespace controller; locally the temp dir goes with stop().
      await plane.kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false']);
    }
    await plane?.stop();
  }, 60_000);

  it('serves /readyz and reports the pinned version', async () => {
    const ready = await cp().kubectl(['get', '--raw', '/readyz']);
    expect(ready.code).toBe(0);
    expect(ready.stdout.trim()).toBe('ok');

    const version = await cp().kubectl(['version', '-o', 'json']);
    expect(version.code).toBe(0);
    const v = JSON.parse(version.stdout) as {
      serverVersion?: { gitVersion?: string };
      clientVersion?: { gitVersion?: string };
    };
    expect(v.serverVersion?.gitVersion).toMatch(/^v1\.\d+\.\d+$/);
    if (!cp().external) expect(v.clientVersion?.gitVersion).toBe(v.serverVersion?.gitVersion);
  });

  it('issues a TokenRequest for audience erpguard that TokenReview authenticates', async () => {
    expect((await cp().kubectl(['create', 'namespace', ns])).code).toBe(0);
    expect((await cp().kubectl(['-n', ns, 'create', 'serviceaccount', 'erp-module'])).code).toBe(0);

    const token = await cp().kubectl([
      '-n',
      ns,
      'create',
      'token',
      'erp-module',
      '--audience',
      'erpguard',
      '--duration',
      '10m',
    ]);
    expect(token.code).toBe(0);
    const jwt = token.stdout.trim();
    expect(jwt.split('.')).toHaveLength(3);

    const review = async (audiences: readonly string[]): Promise<TokenReviewStatus> => {
      const obj = {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: jwt, audiences },
      };
      const res = await cp().kubectl(['create', '-f', '-', '-o', 'json'], {
        input: JSON.stringify(obj),
      });
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      return (JSON.parse(res.stdout) as { status?: TokenReviewStatus }).status ?? {};
    };

    const ok = await review(['erpguard']);
    expect(ok.authenticated).toBe(true);
    expect(ok.audiences).toEqual(['erpguard']);
    expect(ok.user?.username).toBe(`system:serviceaccount:${ns}:erp-module`);
    expect(ok.user?.groups).toEqual(
      expect.arrayContaining([
        'system:serviceaccounts',
        `system:serviceaccounts:${ns}`,
        'system:authenticated',
      ]),
    );

    // The token is scoped: it is not valid for the API server's own audience.
    const wrongAudience = await review([]);
    expect(wrongAudience.authenticated).not.toBe(true);
  });

  it('issues client certificates for users in groups', async () => {
    const alice = await cp().createUserCredentials('alice', ['erp-reviewers']);
    await cp().createUserCredentials('bob');
    expect(cp().userKubeconfig('alice')).toBe(alice.kubeconfigPath);

    const whoami = await cp().kubectl(['auth', 'whoami', '-o', 'json'], {
      kubeconfig: cp().userKubeconfig('alice'),
    });
    expect(whoami.code).toBe(0);
    const info = JSON.parse(whoami.stdout) as {
      status?: { userInfo?: { username?: string; groups?: string[] } };
    };
    expect(info.status?.userInfo?.username).toBe('alice');
    expect(info.status?.userInfo?.groups).toEqual(
      expect.arrayContaining(['erp-reviewers', 'system:authenticated']),
    );

    // RBAC is on: bob has no grants.
    const denied = await cp().kubectl(['-n', ns, 'get', 'serviceaccounts'], {
      kubeconfig: cp().userKubeconfig('bob'),
    });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);
  }, 90_000); // on an existing cluster, certificates go through the CSR API

  it('runs helm against the cluster', async () => {
    const res = await cp().helm(['version', '--short']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^v4\./);
    const list = await cp().helm(['list', '-A', '-o', 'json']);
    expect(list.code).toBe(0);
  });
});
