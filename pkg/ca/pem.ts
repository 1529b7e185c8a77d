/** Strict PEM handling: known labels only, base64 alphabet only, nothing but whitespace around. */

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/=\s]*$/;

export interface PemBlock {
  label: string;
  der: Buffer;
}

export class PemError extends Error {
  override name = 'PemError';
}

/** All blocks of a PEM text. Throws PemError on garbage between blocks or a bad body. */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let last = 0;
  for (const match of text.matchAll(BLOCK)) {
    if (text.slice(last, match.index).trim() !== '') {
      throw new PemError('unexpected text outside PEM blocks');
    }
    const label = match[1] ?? '';
    const body = match[2] ?? '';
    if (!BASE64_BODY.test(body)) throw new PemError(`PEM block "${label}" is not base64`);
    const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
    if (der.length === 0) throw new PemError(`PEM block "${label}" is empty`);
    blocks.push({ label, der });
    last = match.index + match[0].length;
  }
  if (text.slice(last).trim() !== '') throw new PemError('unexpected text outside PEM blocks');
  return blocks;
}

export function encodePem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** DER of every CERTIFICATE block; throws PemError if there is none or another label appears. */
export function decodeCertificates(text: string): Buffer[] {
  const blocks = decodePemBlocks(text);
  if (blocks.length === 0) throw new PemError('no CERTIFICATE block');
  return blocks.map((block) => {
    if (block.label !== 'CERTIFICATE') {
      throw new PemError(`expected CERTIFICATE blocks, found "${block.label}"`);
    }
    return block.der;
  });
}

export function joinPem(blocks: readonly string[]): string {
  return blocks.map((block) => (block.endsWith('\n') ? block : `${block}\n`)).join('');
}
