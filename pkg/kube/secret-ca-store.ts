/**
 * The CA's key store (pkg/ca CaKeyStore) in a Kubernetes Secret, with the same key names as the
 * directory store (tls.crt, tls.key, ca.crt, next.crt, next.key), so the Secret can also be
 * mounted and read by FileCaKeyStore.
 *
 * Writes are optimistic: save() replaces the Secret only if it is still the version last loaded
 * or saved here, and creates it only if it does not exist. Two replicas that both found no CA on
 * first start cannot overwrite each other's root: the loser's save fails (code Unavailable,
 * retryable) and it must load the winner's material.
 */
import type { V1Secret } from '@kubernetes/client-node';

import { CA_FILES } from '../ca/store.js';
import type { CaKeyStore, CaMaterial } from '../ca/store.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';

import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { isConflict, isNotFound, kubeError } from './errors.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from './resources.js';

export const DEFAULT_CA_SECRET_NAME = 'erpguard-ca';

function decode(data: Record<string, string> | undefined, key: string): string | null {
  const v = data?.[key];
  return v === undefined ? null : Buffer.from(v, 'base64').toString('utf8');
}

export class SecretCaKeyStore implements CaKeyStore {
  readonly description: string;
  private resourceVersion: string | undefined;

  constructor(
    private readonly clients: KubeClients,
    private readonly namespace: string,
    private readonly name: string = DEFAULT_CA_SECRET_NAME,
  ) {
    this.description = `Secret ${namespace}/${name}`;
  }

  async load(): Promise<CaMaterial | null> {
    let secret: V1Secret;
    try {
      secret = await this.clients.core.readNamespacedSecret(
        { name: this.name, namespace: this.namespace },
        requestOptions(this.clients),
      );
    } catch (error) {
      if (isNotFound(error)) {
        this.resourceVersion = undefined;
        return null;
      }
      throw kubeError(`read ${this.description}`, error);
    }
    this.resourceVersion = secret.metadata?.resourceVersion;
    const data = secret.data;
    const chain = decode(data, CA_FILES.issuerChain);
    const key = decode(data, CA_FILES.issuerKey);
    const bundle = decode(data, CA_FILES.trustBundle);
    if (chain === null && key === null && bundle === null) return null;
    if (chain === null || key === null) {
      throw new ErpguardError(
        ErrorCode.InvalidConfig,
        `${this.description}: ${CA_FILES.issuerChain} and ${CA_FILES.issuerKey} must both be present`,
      );
    }
    const material: CaMaterial = {
      issuerChainPem: chain,
      issuerKeyPem: key,
      trustBundlePem: bundle ?? '',
    };
    const nextCert = decode(data, CA_FILES.pendingCertificate);
    const nextKey = decode(data, CA_FILES.pendingKey);
    if (nextCert !== null && nextKey !== null) {
      material.pending = { certificatePem: nextCert, keyPem: nextKey };
    }
    return material;
  }

  async save(material: CaMaterial): Promise<void> {
    const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
    const data: Record<string, string> = {
      [CA_FILES.issuerChain]: b64(material.issuerChainPem),
      [CA_FILES.issuerKey]: b64(material.issuerKeyPem),
      [CA_FILES.trustBundle]: b64(material.trustBundlePem),
    };
    if (material.pending !== undefined) {
      data[CA_FILES.pendingCertificate] = b64(material.pending.certificatePem);
      data[CA_FILES.pendingKey] = b64(material.pending.keyPem);
    }
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: this.name,
        namespace: this.namespace,
        labels: { [LABEL_MANAGED_BY]: MANAGED_BY_VALUE },
        ...(this.resourceVersion !== undefined ? { resourceVersion: this.resourceVersion } : {}),
      },
      type: 'kubernetes.io/tls',
      data,
    };
    try {
      const saved =
        this.resourceVersion === undefined
          ? await this.clients.core.createNamespacedSecret(
              { namespace: this.namespace, body },
              requestOptions(this.clients),
            )
          : await this.clients.core.replaceNamespacedSecret(
              { name: this.name, namespace: this.namespace, body },
              requestOptions(this.clients),
            );
      this.resourceVersion = saved.metadata?.resourceVersion;
    } catch (error) {
      if (isConflict(error)) {
        throw new ErpguardError(
          ErrorCode.Unavailable,
          `${this.description} was written by someone else since it was loaded; load it again`,
          { cause: error },
        );
      }
      throw kubeError(`save ${this.description}`, error);
    }
  }
}
