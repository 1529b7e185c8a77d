/** Client for the Admin service (`erpguard revoke` and friends). */
import * as grpc from '@grpc/grpc-js';

import { methods, unary, type RevokedIdentityMessage } from '../proto/erpguard-proto.js';
import {
  channelCredentials,
  channelOptions,
  type ServerConnection,
} from '../workload-identity/tls.js';
import type { Revocation } from './policy-index.js';

export interface AdminClientOptions extends ServerConnection {
  /** Roots that vouch for the identity server. */
  trustBundlePem: string;
  /** A bearer token of an admin identity, or a client certificate of one. */
  token?: string;
  clientCertificate?: { keyPem: string; certificateChainPem: string };
  /** Per-call deadline (default 10 s). */
  timeoutMs?: number;
}

function fromMessage(m: RevokedIdentityMessage): Revocation {
  return { spiffeId: m.spiffeId, until: new Date(m.untilUnixMs), reason: m.reason };
}

export class AdminClient {
  private readonly client: grpc.Client;

  constructor(private readonly options: AdminClientOptions) {
    this.client = new grpc.Client(
      options.target,
      channelCredentials(options, options.trustBundlePem, options.clientCertificate),
      channelOptions(options),
    );
  }

  /** Revokes `spiffeId` until `until` (default: until all its current certificates expired). */
  async revoke(
    spiffeId: string,
    options: { until?: Date; reason?: string } = {},
  ): Promise<Revocation> {
    const response = await unary(
      this.client,
      methods.revoke,
      { spiffeId, untilUnixMs: options.until?.getTime() ?? 0, reason: options.reason ?? '' },
      this.metadata(),
      this.callOptions(),
    );
    return fromMessage(response);
  }

  async unrevoke(spiffeId: string): Promise<boolean> {
    const response = await unary(
      this.client,
      methods.unrevoke,
      { spiffeId },
      this.metadata(),
      this.callOptions(),
    );
    return response.wasRevoked;
  }

  async list(): Promise<Revocation[]> {
    const response = await unary(
      this.client,
      methods.listRevocations,
      {},
      this.metadata(),
      this.callOptions(),
    );
    return response.revoked.map(fromMessage);
  }

  close(): void {
    this.client.close();
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.options.token !== undefined)
      metadata.set('authorization', `Bearer ${this.options.token}`);
    return metadata;
  }

  private callOptions(): grpc.CallOptions {
    return { deadline: Date.now() + (this.options.timeoutMs ?? 10_000) };
  }
}
