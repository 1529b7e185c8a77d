/**
 * Reads policy inputs from files and directories with bounded memory: a size limit per file
 * (checked before reading), a limit on the number of files, only regular files, and directories
 * walked recursively for `.yaml`, `.yml` and `.json` in a stable (sorted) order.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { DEFAULT_LOAD_LIMITS, parsePolicyText } from '../policy/load.js';
import type { SourcedDocument } from '../policy/load.js';

export const DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024;
const MAX_FILES = 10_000;
const POLICY_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export interface InputProblem {
  file: string;
  code: string;
  message: string;
}

export interface PolicyInputs {
  documents: SourcedDocument[];
  /** Files that could not be read or parsed; the rest were still loaded. */
  problems: InputProblem[];
}

/**
 * Lists the files named by `paths` (files as given, directories walked). An entry that cannot be
 * read (missing, dangling symlink, permission, a symlink loop) is reported and skipped: the rest
 * is still listed, so one bad entry never hides the others — and a watcher never keeps serving
 * an old state because one file became unreadable.
 */
export async function listPolicyFiles(
  paths: readonly string[],
): Promise<{ files: string[]; problems: InputProblem[] }> {
  const files: string[] = [];
  const problems: InputProblem[] = [];
  const seenDirs = new Set<string>();
  const seenFiles = new Set<string>();
  const walk = async (path: string, explicit: boolean): Promise<void> => {
    let info;
    let real;
    try {
      info = await stat(path);
      real = await realpath(path);
    } catch (error: unknown) {
      const code = (error as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'no such file or directory'
          : code === 'ELOOP'
            ? 'symlink loop'
            : `cannot read (${code ?? 'error'})`;
      problems.push({ file: path, code: ErrorCode.FileUnreadable, message: `${path}: ${why}` });
      return;
    }
    if (info.isDirectory()) {
      // A directory reached twice (symlinks) is walked once: no loops, no false duplicates.
      if (seenDirs.has(real)) return;
      seenDirs.add(real);
      let entries: string[];
      try {
        entries = (await readdir(path)).sort();
      } catch (error: unknown) {
        problems.push({
          file: path,
          code: ErrorCode.FileUnreadable,
          message: `${path}: cannot list (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        });
        return;
      }
      for (const entry of entries) {
        if (entry.startsWith('.')) continue;
        await walk(join(path, entry), false);
      }
      return;
    }
    if (!info.isFile()) {
      if (explicit)
        problems.push({
          file: path,
          code: ErrorCode.FileUnreadable,
          message: `${path}: not a regular file`,
        });
      return;
    }
    if (!explicit && !POLICY_EXTENSIONS.has(extname(path).toLowerCase())) return;
    if (seenFiles.has(real)) return;
    seenFiles.add(real);
    files.push(path);
    if (files.length > MAX_FILES) {
      throw new ErpguardError(
        ErrorCode.TooManyItems,
        `more than ${MAX_FILES} policy files under ${paths.join(', ')}`,
      );
    }
  };
  for (const path of paths) await walk(path, true);
  return { files, problems };
}

/** Reads and parses every file; one bad file is reported and does not stop the others. */
export async function readPolicyInputs(
  paths: readonly string[],
  maxFileBytes = DEFAULT_MAX_FILE_BYTES,
): Promise<PolicyInputs> {
  const { files, problems } = await listPolicyFiles(paths);
  const documents: SourcedDocument[] = [];
  for (const file of files) {
    try {
      const size = (await stat(file)).size;
      if (size > maxFileBytes) {
        throw new ErpguardError(
          ErrorCode.InputTooLarge,
          `${file}: ${size} bytes is larger than the limit of ${maxFileBytes} bytes`,
        );
      }
      const text = await readFile(file, 'utf8');
      const remaining = DEFAULT_LOAD_LIMITS.maxDocuments - documents.length;
      documents.push(
        ...parsePolicyText(text, file, {
          ...DEFAULT_LOAD_LIMITS,
          maxDocuments: Math.max(remaining, 0),
        }),
      );
    } catch (error: unknown) {
      if (!(error instanceof ErpguardError)) throw error;
      problems.push({ file, code: error.code, message: error.message });
    }
  }
  return { documents, problems };
}
