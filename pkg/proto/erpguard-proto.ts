/**
 * The erpguard gRPC API (erpguard.proto), embedded as a protobuf.js JSON descriptor so the
 * compiled code in dist/ needs no .proto file next to it. erpguard-proto.test.ts checks this
 * descriptor against erpguard.proto field by field.
 */
import type * as grpc from '@grpc/grpc-js';
import { fromJSON, type MethodDefinition, type Options } from '@grpc/proto-loader';

export const PACKAGE = 'erpguard.v1alpha1';

type FieldSpec = readonly [type: string, id: number, rule?: 'repeated'];

function message(fields: Record<string, FieldSpec>): {
  fields: Record<string, { type: string; id: number; rule?: string }>;
} {
  return {
    fields: Object.fromEntries(
      Object.entries(fields).map(([name, [type, id, rule]]) => [
        name,
        rule === undefined ? { type, id } : { type, id, rule },
      ]),
    ),
  };
}

function rpc(
  requestType: string,
  responseType: string,
  responseStream = false,
): { requestType: string; responseType: string; responseStream: boolean; comment: string } {
  return { requestType, responseType, responseStream, comment: '' };
}

/** protobuf.js JSON of erpguard.proto (field names in lowerCamelCase, as protobuf.js parses). */
export const ERPGUARD_PROTO_JSON: Parameters<typeof fromJSON>[0] = {
  nested: {
    erpguard: {
      nested: {
        v1alpha1: {
          nested: {
            Identity: {
              methods: {
                SignCertificate: rpc('SignCertificateRequest', 'SignCertificateResponse'),
              },
            },
            SignCertificateRequest: message({ csr: ['string', 1], ttlSeconds: ['uint32', 2] }),
            SignCertificateResponse: message({
              certificateChain: ['string', 1],
              trustBundle: ['string', 2],
              notAfterUnixMs: ['int64', 3],
              notBeforeUnixMs: ['int64', 4],
              spiffeId: ['string', 5],
            }),
            Policy: {
              methods: {
                Watch: rpc('WatchRequest', 'PolicySnapshot', true),
              },
            },
            WatchRequest: message({
              module: ['string', 1],
              namespace: ['string', 2],
              knownVersion: ['uint64', 3],
            }),
            PolicySnapshot: message({
              version: ['uint64', 1],
              namespace: ['string', 2],
              module: ['string', 3],
              policies: ['string', 4, 'repeated'],
              revokedIdentities: ['RevokedIdentity', 5, 'repeated'],
              trustBundle: ['string', 6],
              identityBindings: ['IdentityBinding', 7, 'repeated'],
              certificateTtlSeconds: ['uint32', 8],
            }),
            RevokedIdentity: message({
              spiffeId: ['string', 1],
              untilUnixMs: ['int64', 2],
              reason: ['string', 3],
            }),
            IdentityBinding: message({ spiffeId: ['string', 1], module: ['string', 2] }),
            Admin: {
              methods: {
                Revoke: rpc('RevokeRequest', 'RevokedIdentity'),
                Unrevoke: rpc('UnrevokeRequest', 'UnrevokeResponse'),
                ListRevocations: rpc('ListRevocationsRequest', 'ListRevocationsResponse'),
              },
            },
            RevokeRequest: message({
              spiffeId: ['string', 1],
              untilUnixMs: ['int64', 2],
              reason: ['string', 3],
            }),
            UnrevokeRequest: message({ spiffeId: ['string', 1] }),
            UnrevokeResponse: message({ wasRevoked: ['bool', 1] }),
            ListRevocationsRequest: message({}),
            ListRevocationsResponse: message({ revoked: ['RevokedIdentity', 1, 'repeated'] }),
          },
        },
      },
    },
  },
};

/** 64-bit integers as JS numbers (all ours are < 2^53), defaults filled in, camelCase fields. */
export const LOADER_OPTIONS: Options = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// === message types (what proto-loader produces with LOADER_OPTIONS) ===

export interface SignCertificateRequest {
  csr: string;
  ttlSeconds: number;
}
export interface SignCertificateResponse {
  certificateChain: string;
  trustBundle: string;
  notAfterUnixMs: number;
  notBeforeUnixMs: number;
  spiffeId: string;
}
export interface WatchRequest {
  module: string;
  namespace: string;
  knownVersion: number;
}
export interface RevokedIdentityMessage {
  spiffeId: string;
  untilUnixMs: number;
  reason: string;
}
export interface IdentityBindingMessage {
  spiffeId: string;
  module: string;
}
export interface PolicySnapshotMessage {
  version: number;
  namespace: string;
  module: string;
  policies: string[];
  revokedIdentities: RevokedIdentityMessage[];
  trustBundle: string;
  identityBindings: IdentityBindingMessage[];
  certificateTtlSeconds: number;
}
export interface RevokeRequest {
  spiffeId: string;
  untilUnixMs: number;
  reason: string;
}
export interface UnrevokeRequest {
  spiffeId: string;
}
export interface UnrevokeResponse {
  wasRevoked: boolean;
}
export type ListRevocationsRequest = Record<string, never>;
export interface ListRevocationsResponse {
  revoked: RevokedIdentityMessage[];
}

// === service definitions ===

const packageDefinition = fromJSON(ERPGUARD_PROTO_JSON, LOADER_OPTIONS);

function method<Req, Res>(service: string, name: string): MethodDefinition<Req, Res> {
  const definition = packageDefinition[`${PACKAGE}.${service}`] as
    Record<string, MethodDefinition<Req, Res>> | undefined;
  const found = definition?.[name];
  if (found === undefined) throw new Error(`proto: ${service}.${name} is not defined`);
  return found;
}

export const methods = {
  signCertificate: method<SignCertificateRequest, SignCertificateResponse>(
    'Identity',
    'SignCertificate',
  ),
  watch: method<WatchRequest, PolicySnapshotMessage>('Policy', 'Watch'),
  revoke: method<RevokeRequest, RevokedIdentityMessage>('Admin', 'Revoke'),
  unrevoke: method<UnrevokeRequest, UnrevokeResponse>('Admin', 'Unrevoke'),
  listRevocations: method<ListRevocationsRequest, ListRevocationsResponse>(
    'Admin',
    'ListRevocations',
  ),
} as const;

/** grpc-js service definitions for Server.addService. */
export const services = {
  identity: packageDefinition[`${PACKAGE}.Identity`] as grpc.ServiceDefinition,
  policy: packageDefinition[`${PACKAGE}.Policy`] as grpc.ServiceDefinition,
  admin: packageDefinition[`${PACKAGE}.Admin`] as grpc.ServiceDefinition,
} as const;

export { packageDefinition };

/** A unary call on a generic grpc-js client, as a promise. */
export function unary<Req, Res>(
  client: grpc.Client,
  definition: MethodDefinition<Req, Res>,
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      metadata,
      options,
      (error, response) => {
        if (error !== null) reject(error);
        else if (response === undefined) reject(new Error('empty response'));
        else resolve(response);
      },
    );
  });
}

/** A server-streaming call on a generic grpc-js client. */
export function serverStream<Req, Res>(
  client: grpc.Client,
  definition: MethodDefinition<Req, Res>,
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
): grpc.ClientReadableStream<Res> {
  return client.makeServerStreamRequest(
    definition.path,
    definition.requestSerialize,
    definition.responseDeserialize,
    request,
    metadata,
    options,
  );
}
