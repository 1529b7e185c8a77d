/**
 * Bridges the workload identity clients (pkg/workload-identity) to the sidecar's sources
 * (pkg/sidecar): the two packages are adapters and do not import each other; cmd/ joins them.
 */
import type {
  PolicySnapshot,
  PolicySnapshotSource,
  TlsMaterial,
  TlsMaterialSource,
} from '../../pkg/sidecar/types.js';
import type {
  PolicySnapshotView,
  PolicyWatchClient,
  WorkloadIdentityClient,
  WorkloadMaterial,
} from '../../pkg/workload-identity/index.js';

export function tlsMaterialOf(material: WorkloadMaterial): TlsMaterial {
  return {
    key: material.keyPem,
    certChain: material.certificateChainPem,
    trustBundle: material.trustBundlePem,
    notAfter: material.notAfter,
    spiffeId: material.spiffeId,
  };
}

/** The sidecar's TLS source, fed by certificate issuance and renewal. */
export function tlsSourceFrom(client: WorkloadIdentityClient): TlsMaterialSource {
  return {
    current: () => {
      const material = client.current();
      return material ? tlsMaterialOf(material) : undefined;
    },
    onChange: (listener) =>
      client.onChange((material) => {
        if (material) listener(tlsMaterialOf(material));
      }),
  };
}

export function snapshotOf(view: PolicySnapshotView): PolicySnapshot {
  return {
    version: view.version,
    policies: view.policies,
    revokedIdentities: view.revokedIdentities.map((r) => ({
      spiffeId: r.spiffeId,
      until: r.until.getTime(),
    })),
    trustBundle: view.trustBundlePem,
    identityBindings: Object.fromEntries(view.identityBindings),
  };
}

/** The sidecar's policy source, fed by the Policy.Watch stream (last good snapshot kept). */
export function policySourceFrom(
  watch: PolicyWatchClient,
  identity?: WorkloadIdentityClient,
): PolicySnapshotSource {
  return {
    current: () => {
      const view = watch.current();
      return view ? snapshotOf(view) : undefined;
    },
    onChange: (listener) =>
      watch.onSnapshot((view) => {
        // A new trust bundle (root rotation) must reach the identity client too, so renewals trust
        // the server after it moves to the new root.
        identity?.setTrustBundle(view.trustBundlePem);
        listener(snapshotOf(view));
      }),
  };
}
