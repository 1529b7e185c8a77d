import { fileURLToPath } from 'node:url';

import { describe, expect, it } from '@jest/globals';
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';

import { LOADER_OPTIONS, methods, packageDefinition } from './erpguard-proto.js';

const protoPath = fileURLToPath(new URL('./erpguard.proto', import.meta.url));

interface FieldShape {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}

/** A comparable view of a package: method paths and streaming, message fields. */
function shape(definition: PackageDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(definition)) {
    if ('format' in entry) {
      const fields = (entry.type as { field: FieldShape[] }).field.map((f) => ({
        name: f.name,
        number: f.number,
        label: f.label,
        type: f.type,
        typeName: f.typeName,
      }));
      out[name] = fields;
    } else {
      out[name] = Object.fromEntries(
        Object.entries(entry as Record<string, MethodDefinition<unknown, unknown>>).map(
          ([method, d]) => [
            method,
            {
              path: d.path,
              requestStream: d.requestStream,
              responseStream: d.responseStream,
              request: (d.requestType.type as { name: string }).name,
              response: (d.responseType.type as { name: string }).name,
            },
          ],
        ),
      );
    }
  }
  return out;
}

describe('embedded proto descriptor', () => {
  it('matches erpguard.proto exactly', () => {
    const fromFile = loadSync(protoPath, LOADER_OPTIONS);
    const embedded = shape(packageDefinition);
    expect(embedded).toEqual(shape(fromFile));
    expect(embedded['erpguard.v1alpha1.PolicySnapshot']).toHaveLength(8);
    expect(Object.keys(packageDefinition)).toHaveLength(14);
  });

  it('round-trips a snapshot with 64-bit fields as numbers', () => {
    const snapshot = {
      version: 2 ** 40 + 3,
      namespace: 'erp',
      module: 'finance',
      policies: ['{"a":1}'],
      revokedIdentities: [
        { spiffeId: 'spiffe://x/ns/a/sa/b', untilUnixMs: 1_900_000_000_000, reason: 'r' },
      ],
      trustBundle: 'pem',
      identityBindings: [{ spiffeId: 'spiffe://x/ns/a/sa/b', module: 'crm' }],
      certificateTtlSeconds: 1800,
    };
    const bytes = methods.watch.responseSerialize(snapshot);
    expect(methods.watch.responseDeserialize(bytes)).toEqual(snapshot);
  });
});
