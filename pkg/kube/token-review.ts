/**
 * Authenticates a sidecar's projected ServiceAccount token with a TokenReview (the API server
 * checks signature, expiry, audience and that the bound pod and ServiceAccount still exist) and
 * resolves the ServiceAccount's module from its `erpguard.io/module` label.
 *
 * The identity comes only from what the API server says about the token, never from the caller:
 * the username must be exactly `system:serviceaccount:<namespace>:<name>`, the review must report
 * our audience (an empty audience list means "valid for the API server", which we refuse), and
 * the ServiceAccount's uid must match the token's, so a recreated ServiceAccount of the same name
 * cannot inherit an old label from a cache.
 */
import { LABEL_MODULE, TOKEN_AUDIENCE } from '../api/v1alpha1/index.js';
import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { isNotFound, kubeError } from './errors.js';
import { projectMeta } from './resources.js';
import type { ObjectMetaLite } from './resources.js';

export interface AuthenticatedWorkload {
  namespace: string;
  serviceAccount: string;
  /** The ServiceAccount's `erpguard.io/module` label; absent when unlabelled. */
  module?: string;
  /** The pod the token is bound to, when the token is a bound (projected) one. */
  podName?: string;
  podUid?: string;
}

/** The port pkg/identity consumes (matches its Authenticator). */
export interface TokenAuthenticator {
  authenticate(token: string): Promise<AuthenticatedWorkload | null>;
}

/** A cache of ServiceAccounts (the informer); misses and uid mismatches fall back to a GET. */
export interface ServiceAccountCache {
  get(name: string, namespace?: string): { metadata: ObjectMetaLite } | undefined;
}

export interface TokenReviewAuthenticatorOptions {
  /** Audiences the token must be valid for. Default ["erpguard"]. */
  audiences?: readonly string[];
  serviceAccounts?: ServiceAccountCache;
  logger?: Logger;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const SA_PREFIX = 'system:serviceaccount:';
/** JWTs are base64url segments separated by dots; anything else is not worth a round trip. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
export const MAX_TOKEN_BYTES = 16 * 1024;

const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

/** `system:serviceaccount:<ns>:<name>` → parts, or null for anything else. */
export function parseServiceAccountUsername(
  username: string | undefined,
): { namespace: string; name: string } | null {
  if (username === undefined || !username.startsWith(SA_PREFIX)) return null;
  const parts = username.slice(SA_PREFIX.length).split(':');
  if (parts.length !== 2) return null;
  const [namespace, name] = parts as [string, string];
  if (namespace.length > 63 || !DNS1123_LABEL.test(namespace)) return null;
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) return null;
  return { namespace, name };
}

function firstExtra(extra: Record<string, string[]> | undefined, key: string): string | undefined {
  const v = extra?.[key]?.[0];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export class TokenReviewAuthenticator implements TokenAuthenticator {
  private readonly audiences: readonly string[];
  private readonly log: Logger;

  constructor(
    private readonly clients: KubeClients,
    private readonly options: TokenReviewAuthenticatorOptions = {},
  ) {
    this.audiences = options.audiences ?? [TOKEN_AUDIENCE];
    if (this.audiences.length === 0)
      throw new RangeError('TokenReview: audiences must not be empty');
    this.log = (options.logger ?? silentLogger()).child({ authenticator: 'tokenreview' });
  }

  /**
   * The workload behind `token`, or null when the token does not authenticate as a
   * ServiceAccount for our audience. Throws ErpguardError (code Unavailable, retryable) when the
   * API server cannot be asked, so callers can answer "try again" instead of "denied".
   */
  async authenticate(token: string): Promise<AuthenticatedWorkload | null> {
    if (
      typeof token !== 'string' ||
      token.length === 0 ||
      token.length > MAX_TOKEN_BYTES ||
      !TOKEN_SHAPE.test(token)
    ) {
      return null;
    }
    let status;
    try {
      const review = await this.clients.authentication.createTokenReview(
        {
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            spec: { token, audiences: [...this.audiences] },
          },
        },
        requestOptions(this.clients),
      );
      status = review.status;
    } catch (error) {
      throw kubeError('TokenReview', error);
    }
    if (status?.authenticated !== true) {
      this.log.debug('token not authenticated', { error: status?.error });
      return null;
    }
    if (!(status.audiences ?? []).some((a) => this.audiences.includes(a))) {
      this.log.warn('token authenticated without our audience', { audiences: status.audiences });
      return null;
    }
    const sa = parseServiceAccountUsername(status.user?.username);
    if (sa === null) {
      this.log.warn('token does not belong to a ServiceAccount', {
        username: status.user?.username,
      });
      return null;
    }
    const meta = await this.serviceAccount(sa.namespace, sa.name, status.user?.uid);
    if (meta === null) return null;
    const module = meta.labels?.[LABEL_MODULE];
    const podName = firstExtra(status.user?.extra, POD_NAME_EXTRA);
    const podUid = firstExtra(status.user?.extra, POD_UID_EXTRA);
    return {
      namespace: sa.namespace,
      serviceAccount: sa.name,
      ...(module !== undefined && module !== '' ? { module } : {}),
      ...(podName !== undefined ? { podName } : {}),
      ...(podUid !== undefined ? { podUid } : {}),
    };
  }

  private async serviceAccount(
    namespace: string,
    name: string,
    uid: string | undefined,
  ): Promise<ObjectMetaLite | null> {
    const cached = this.options.serviceAccounts?.get(name, namespace)?.metadata;
    if (cached !== undefined && (uid === undefined || cached.uid === uid)) return cached;
    let meta: ObjectMetaLite;
    try {
      meta = projectMeta(
        (
          await this.clients.core.readNamespacedServiceAccount(
            { name, namespace },
            requestOptions(this.clients),
          )
        ).metadata,
      );
    } catch (error) {
      if (isNotFound(error)) return null;
      throw kubeError(`read ServiceAccount ${namespace}/${name}`, error);
    }
    if (uid !== undefined && meta.uid !== uid) {
      this.log.warn('ServiceAccount was recreated after the token was issued', { namespace, name });
      return null;
    }
    return meta;
  }
}
