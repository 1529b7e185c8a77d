/** Object identifiers used by the CA (RFC 5280, RFC 5758, RFC 8017, RFC 2985). */
export const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  rsassaPss: '1.2.840.113549.1.1.10',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha1: '1.2.840.10045.4.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  prime256v1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  extensionRequest: '1.2.840.113549.1.9.14',
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** Signature algorithms the CA accepts on CSRs, with the digest Node's crypto needs. */
export const SIGNATURE_ALGORITHMS: Readonly<
  Record<string, { keyType: 'rsa' | 'ec'; hash: 'sha256' | 'sha384' | 'sha512' }>
> = {
  [OID.sha256WithRSAEncryption]: { keyType: 'rsa', hash: 'sha256' },
  [OID.sha384WithRSAEncryption]: { keyType: 'rsa', hash: 'sha384' },
  [OID.sha512WithRSAEncryption]: { keyType: 'rsa', hash: 'sha512' },
  [OID.ecdsaWithSha256]: { keyType: 'ec', hash: 'sha256' },
  [OID.ecdsaWithSha384]: { keyType: 'ec', hash: 'sha384' },
  [OID.ecdsaWithSha512]: { keyType: 'ec', hash: 'sha512' },
};
