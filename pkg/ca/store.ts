/**
 * Where the CA keeps its keys: a port with a directory adapter here (local mode) and a Secret
 * adapter in pkg/kube. Both use the key names of a Kubernetes TLS Secret, so a mounted Secret is
 * also a valid directory for FileCaKeyStore.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';

import { ErpguardError, ErrorCode } from '../errors/errors.js';

/** The CA's persistent state; every field is PEM text. */
export interface CaMaterial {
  /** The issuing certificate, followed by intermediates up to (not including) a root. */
  issuerChainPem: string;
  /** PKCS#8 private key of the issuing certificate. */
  issuerKeyPem: string;
  /** Every trusted root, the one anchoring the issuer included. */
  trustBundlePem: string;
  /** A root made by a rotation that is trusted but does not issue yet. */
  pending?: { certificatePem: string; keyPem: string };
}

export interface CaKeyStore {
  /** null when nothing is stored yet (first start: the CA makes a root and saves it). */
  load(): Promise<CaMaterial | null>;
  save(material: CaMaterial): Promise<void>;
  /** For logs: where the material lives. */
  readonly description: string;
}

/** Secret / file keys. */
export const CA_FILES = {
  issuerChain: 'tls.crt',
  issuerKey: 'tls.key',
  trustBundle: 'ca.crt',
  pendingCertificate: 'next.crt',
  pendingKey: 'next.key',
} as const;

const MAX_FILE_BYTES = 1024 * 1024;

/** Keeps material in memory only (tests, benchmarks, ephemeral demos). */
export class MemoryCaKeyStore implements CaKeyStore {
  readonly description = 'memory';
  private material: CaMaterial | null;

  constructor(initial: CaMaterial | null = null) {
    this.material = initial;
  }
  load(): Promise<CaMaterial | null> {
    return Promise.resolve(this.material === null ? null : structuredClone(this.material));
  }
  save(material: CaMaterial): Promise<void> {
    this.material = structuredClone(material);
    return Promise.resolve();
  }
}

async function readOptional(path: string): Promise<string | null> {
  try {
    const handle = await open(path, constants.O_RDONLY);
    try {
      const stat = await handle.stat();
      if (!stat.isFile())
        throw new ErpguardError(ErrorCode.FileUnreadable, `${path} is not a file`);
      if (stat.size > MAX_FILE_BYTES) {
        throw new ErpguardError(ErrorCode.InputTooLarge, `${path} is larger than 1 MiB`);
      }
      return (await handle.readFile()).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (error instanceof ErpguardError) throw error;
    throw new ErpguardError(ErrorCode.FileUnreadable, `cannot read ${path}`, { cause: error });
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A directory holding tls.crt, tls.key, ca.crt (and next.crt/next.key during a rotation).
 * Saving is atomic as a whole, like kubelet's Secret volumes: the files are written into a fresh
 * version directory, `..data` is switched to it with one rename, and the top-level names are
 * symlinks through `..data`. A crash mid-save leaves the previous version intact.
 */
export class FileCaKeyStore implements CaKeyStore {
  readonly description: string;

  constructor(private readonly dir: string) {
    this.description = `directory ${dir}`;
  }

  async load(): Promise<CaMaterial | null> {
    const read = (name: string): Promise<string | null> => readOptional(join(this.dir, name));
    const [chain, key, bundle, nextCert, nextKey] = await Promise.all([
      read(CA_FILES.issuerChain),
      read(CA_FILES.issuerKey),
      read(CA_FILES.trustBundle),
      read(CA_FILES.pendingCertificate),
      read(CA_FILES.pendingKey),
    ]);
    if (chain === null && key === null && bundle === null) return null;
    if (chain === null || key === null) {
      throw new ErpguardError(
        ErrorCode.InvalidConfig,
        `${this.dir}: ${CA_FILES.issuerChain} and ${CA_FILES.issuerKey} must both be present`,
      );
    }
    const material: CaMaterial = {
      issuerChainPem: chain,
      issuerKeyPem: key,
      // A lone self-signed root may be given without ca.crt: it trusts itself.
      trustBundlePem: bundle ?? '',
    };
    if (nextCert !== null && nextKey !== null) {
      material.pending = { certificatePem: nextCert, keyPem: nextKey };
    }
    return material;
  }

  async save(material: CaMaterial): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const version = `..${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const versionDir = join(this.dir, version);
    await mkdir(versionDir, { mode: 0o700 });
    const files: [string, string, number][] = [
      [CA_FILES.issuerChain, material.issuerChainPem, 0o644],
      [CA_FILES.issuerKey, material.issuerKeyPem, 0o600],
      [CA_FILES.trustBundle, material.trustBundlePem, 0o644],
    ];
    if (material.pending !== undefined) {
      files.push([CA_FILES.pendingCertificate, material.pending.certificatePem, 0o644]);
      files.push([CA_FILES.pendingKey, material.pending.keyPem, 0o600]);
    }
    for (const [name, content, mode] of files) {
      const handle = await open(join(versionDir, name), 'wx', mode);
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    const dataLink = join(this.dir, '..data');
    const previous = (await pathExists(dataLink)) ? await readlink(dataLink) : null;
    const tmpLink = join(this.dir, `..data_tmp-${randomBytes(4).toString('hex')}`);
    await symlink(version, tmpLink);
    await rename(tmpLink, dataLink);
    for (const name of Object.values(CA_FILES)) {
      const target = join('..data', name);
      const path = join(this.dir, name);
      const linked = await readlink(path).catch(() => null);
      if (linked === target) continue;
      const tmp = join(this.dir, `.${name}.tmp-${randomBytes(4).toString('hex')}`);
      await symlink(target, tmp);
      await rename(tmp, path);
    }
    if (previous !== null && previous !== version && previous.startsWith('..')) {
      await rm(join(this.dir, previous), { recursive: true, force: true });
    }
  }
}

/** Reads a PEM file with the same limits as the store (for CLI / cmd wiring). */
export async function readPemFile(path: string): Promise<string> {
  const text = await readOptional(path);
  if (text === null) throw new ErpguardError(ErrorCode.FileUnreadable, `${path} does not exist`);
  return text;
}
