import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import forge from 'node-forge';

import { CaError, CaReason } from './errors.js';
import { generateKeysSync } from './keys.js';
import { decodePemBlocks, encodePem } from './pem.js';
import { buildCsr, parseCsr } from './pkcs10.js';

const dir = mkdtempSync(join(tmpdir(), 'erpguard-pkcs10-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
/** A CSR made by the openssl CLI: an independent implementation of PKCS#10. */
function opensslCsr(keyArgs: string[], extra: string[] = []): string {
  const out = join(dir, `req-${counter++}.csr`);
  execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-nodes',
      '-keyout',
      join(dir, `k-${counter}.key`),
      '-subj',
      '/O=test',
      ...keyArgs,
      ...extra,
      '-out',
      out,
    ],
    { stdio: 'pipe' },
  );
  return readFileSync(out, 'utf8');
}

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof CaError) return error.reason;
    throw error;
  }
  return 'accepted';
}

/** Re-wraps modified DER as a PEM CSR. */
function csrFromDer(der: Buffer): string {
  return encodePem('CERTIFICATE REQUEST', der);
}
function derOf(pem: string): Buffer {
  const [block] = decodePemBlocks(pem);
  if (block === undefined) throw new Error('no block');
  return block.der;
}

describe('parseCsr accepts well-formed CSRs from several implementations', () => {
  const cases: [string, () => string, string][] = [
    [
      'own builder, EC P-256',
      () => buildCsr(generateKeysSync('ec-p256').privateKey),
      'ec-prime256v1',
    ],
    [
      'own builder, EC P-384',
      () => buildCsr(generateKeysSync('ec-p384').privateKey),
      'ec-secp384r1',
    ],
    ['own builder, RSA 2048', () => buildCsr(generateKeysSync('rsa-2048').privateKey), 'rsa-2048'],
    [
      'openssl, EC P-256',
      () => opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']),
      'ec-prime256v1',
    ],
    ['openssl, RSA 3072', () => opensslCsr(['-newkey', 'rsa:3072']), 'rsa-3072'],
    [
      'node-forge, RSA 2048',
      () => {
        const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
        const csr = forge.pki.createCertificationRequest();
        csr.publicKey = keys.publicKey;
        csr.setSubject([{ name: 'organizationName', value: 'test' }]);
        csr.sign(keys.privateKey, forge.md.sha256.create());
        return forge.pki.certificationRequestToPem(csr);
      },
      'rsa-2048',
    ],
  ];
  it.each(cases)('%s', (_name, make, description) => {
    const parsed = parseCsr(make());
    expect(parsed.keyDescription).toBe(description);
    expect(parsed.requested.uris).toEqual([]);
    expect(parsed.requestsCa).toBe(false);
  });

  it('our CSRs verify with openssl too', () => {
    const path = join(dir, 'own.csr');
    execFileSync('bash', ['-c', `cat > ${path}`], {
      input: buildCsr(generateKeysSync('ec-p256').privateKey, { uris: ['spiffe://td/ns/a/sa/b'] }),
    });
    const text = execFileSync('openssl', ['req', '-in', path, '-verify', '-noout', '-text'], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
    expect(text).toContain('URI:spiffe://td/ns/a/sa/b');
  });

  it('reports requested names, the subject and a CA request', () => {
    const csr = opensslCsr(
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      [
        '-addext',
        'subjectAltName=URI:spiffe://cluster.local/ns/x/sa/y,DNS:evil.example,IP:10.0.0.1,email:a@b.c',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
      ],
    );
    const parsed = parseCsr(csr);
    expect(parsed.requested).toEqual({
      uris: ['spiffe://cluster.local/ns/x/sa/y'],
      dnsNames: ['evil.example'],
      ipAddresses: ['0a000001'],
      emails: ['a@b.c'],
      other: 0,
    });
    expect(parsed.requestsCa).toBe(true);
    expect(parsed.subjectValues).toEqual(['test']);
  });
});

describe('parseCsr refuses bad CSRs with a stable reason', () => {
  const valid = buildCsr(generateKeysSync('ec-p256').privateKey);
  const validDer = derOf(valid);

  const cases: [string, () => string, CaReason][] = [
    ['1024-bit RSA key', () => opensslCsr(['-newkey', 'rsa:1024']), CaReason.CsrWeakKey],
    [
      'RSA with exponent 3',
      () =>
        buildCsr(generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey),
      CaReason.CsrWeakKey,
    ],
    [
      'EC P-521',
      () => opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521']),
      CaReason.CsrUnsupportedKey,
    ],
    ['Ed25519', () => opensslCsr(['-newkey', 'ed25519']), CaReason.CsrUnsupportedKey],
    [
      'SHA-1 signature',
      () => opensslCsr(['-newkey', 'rsa:2048'], ['-sha1']),
      CaReason.CsrUnsupportedSignatureAlgorithm,
    ],
    [
      'signature byte flipped',
      () => {
        const der = Buffer.from(validDer);
        der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01;
        return csrFromDer(der);
      },
      CaReason.CsrSignatureInvalid,
    ],
    [
      'public key swapped after signing',
      () => {
        const a = generateKeysSync('ec-p256');
        const b = generateKeysSync('ec-p256');
        const spki = (k: typeof a): Buffer => k.publicKey.export({ type: 'spki', format: 'der' });
        const der = derOf(buildCsr(a.privateKey));
        const at = der.indexOf(spki(a));
        spki(b).copy(der, at);
        return csrFromDer(der);
      },
      CaReason.CsrSignatureInvalid,
    ],
    ['not PEM', () => 'hello', CaReason.CsrMalformed],
    ['empty', () => '', CaReason.CsrMalformed],
    [
      'certificate instead of CSR',
      () => valid.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'),
      CaReason.CsrMalformed,
    ],
    ['two CSRs', () => valid + valid, CaReason.CsrMalformed],
    ['text after the block', () => `${valid}trailing`, CaReason.CsrMalformed],
    [
      'base64 garbage',
      () => '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      CaReason.CsrMalformed,
    ],
    [
      'trailing bytes after the DER',
      () => csrFromDer(Buffer.concat([validDer, Buffer.from([0])])),
      CaReason.CsrMalformed,
    ],
    [
      'non-canonical length encoding',
      () => {
        // Re-encode the outer SEQUENCE length in long form with a leading zero byte (BER, not DER).
        const lengthBytes = (validDer[1] ?? 0) & 0x7f;
        const body = validDer.subarray(2 + ((validDer[1] ?? 0) & 0x80 ? lengthBytes : 0));
        const len = Buffer.alloc(2);
        len.writeUInt16BE(body.length);
        return csrFromDer(Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), len, body]));
      },
      CaReason.CsrMalformed,
    ],
    ['larger than the limit', () => valid + ' '.repeat(9000), CaReason.CsrTooLarge],
  ];
  it.each(cases)('%s', (_name, make, reason) => {
    expect(reasonOf(() => parseCsr(make()))).toBe(reason);
  });

  it('never throws anything but CaError on mutated input (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 4,
        }),
        (mutations) => {
          const der = Buffer.from(validDer);
          for (const m of mutations) der[m.at % der.length] = m.value;
          const outcome = reasonOf(() => parseCsr(csrFromDer(der)));
          // A mutation may hit an ignored byte and still verify; anything else is a clean reason.
          expect([...Object.values(CaReason), 'accepted']).toContain(outcome);
        },
      ),
      { numRuns: 300 },
    );
  });
});
