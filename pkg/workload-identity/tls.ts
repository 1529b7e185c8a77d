/** TLS helpers shared by workloads: channel credentials for the identity server, peer checks. */
import type { PeerCertificate, SecureContextOptions } from 'node:tls';

import * as grpc from '@grpc/grpc-js';

import { spiffeIdOfCertificate } from '../ca/spiffe.js';

/** The material a workload presents and trusts. */
export interface WorkloadMaterial {
  /** PKCS#8 PEM private key (generated in this process; it never leaves it). */
  keyPem: string;
  /** PEM: leaf first, then intermediates. */
  certificateChainPem: string;
  /** PEM: every root to trust for peers. */
  trustBundlePem: string;
  notBefore: Date;
  notAfter: Date;
  spiffeId: string;
}

/** Options for tls.createServer / server.setSecureContext / https.Agent from workload material. */
export function secureContextOptions(material: WorkloadMaterial): SecureContextOptions {
  return { key: material.keyPem, cert: material.certificateChainPem, ca: material.trustBundlePem };
}

/**
 * A `checkServerIdentity` for SPIFFE peers: the peer certificate must carry exactly one SPIFFE ID
 * and `accept` must approve it. Hostnames play no part (mTLS between workloads is by identity).
 */
export function checkPeerSpiffeId(
  accept: (spiffeId: string) => boolean,
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    const id = spiffeIdOfCertificate(cert);
    if (id === null) return new Error('peer certificate carries no single SPIFFE ID');
    return accept(id) ? undefined : new Error(`peer ${id} is not accepted`);
  };
}

export interface ServerConnection {
  /** `host:port` of the identity server. */
  target: string;
  /** Expected SPIFFE ID of the server; when set, it replaces hostname verification. */
  serverSpiffeId?: string;
  /** TLS name to verify instead of the target host (grpc.ssl_target_name_override). */
  serverName?: string;
}

export function channelCredentials(
  connection: ServerConnection,
  trustBundlePem: string,
  clientMaterial?: { keyPem: string; certificateChainPem: string },
): grpc.ChannelCredentials {
  const expected = connection.serverSpiffeId;
  return grpc.credentials.createSsl(
    Buffer.from(trustBundlePem),
    clientMaterial === undefined ? null : Buffer.from(clientMaterial.keyPem),
    clientMaterial === undefined ? null : Buffer.from(clientMaterial.certificateChainPem),
    expected === undefined
      ? {}
      : { checkServerIdentity: checkPeerSpiffeId((id) => id === expected) },
  );
}

export function channelOptions(connection: ServerConnection): grpc.ChannelOptions {
  const options: grpc.ChannelOptions = {
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  };
  if (connection.serverName !== undefined) {
    options['grpc.ssl_target_name_override'] = connection.serverName;
    options['grpc.default_authority'] = connection.serverName;
  } else if (connection.serverSpiffeId !== undefined) {
    // The server is verified by its SPIFFE ID, so the TLS name is irrelevant; a fixed name keeps
    // grpc-js from sending an IP address as SNI (which Node deprecates, DEP0123).
    options['grpc.ssl_target_name_override'] = 'erpguard-identity';
  }
  return options;
}
