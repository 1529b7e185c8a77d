/**
 * Parsing policy documents from YAML or JSON text. Pure: the caller reads the file (with a size
 * limit) and passes its content and name in. Multi-document files and `List` /
 * `ErpIntegrationPolicyList` objects are flattened into one list of documents, each with the
 * file, document index and line it came from, so every later error can name its origin.
 */
import { YAMLException, loadAll } from 'js-yaml';
import { ErpguardError, ErrorCode } from '../errors/errors.js';

export interface LoadLimits {
  /** Aliases (`*ref`) per document. YAML bombs expand through aliases; real policies need none. */
  maxAliases: number;
  /** Nesting depth of collections. */
  maxDepth: number;
  /** Documents plus list items per input. */
  maxDocuments: number;
  /**
   * Values (scalars, lists, maps) per input after alias expansion. Aliases are shared references
   * after parsing, but every later walk (validation, hashing) would expand them.
   */
  maxNodes: number;
}

export const DEFAULT_LOAD_LIMITS: LoadLimits = {
  maxAliases: 64,
  maxDepth: 32,
  maxDocuments: 10_000,
  maxNodes: 2_000_000,
};

/** One parsed document and where it came from. */
export interface SourcedDocument {
  /** File name as given by the caller. */
  file: string;
  /** Zero-based document index in the file (a `List` item gets `index.item`). */
  index: string;
  /** One-based line of the document start, when known. */
  line?: number;
  value: unknown;
}

/** `file`, `file#2` or `file#2.5`, for messages. */
export function describeOrigin(doc: Pick<SourcedDocument, 'file' | 'index' | 'line'>): string {
  const where = doc.index === '0' ? doc.file : `${doc.file}#${doc.index}`;
  return doc.line === undefined ? where : `${where} (line ${doc.line})`;
}

/**
 * Parses YAML (JSON is YAML) into documents. Throws ErpguardError ParseError naming file, line and
 * column, or TooManyItems. Empty documents (`---` with nothing) are skipped.
 */
export function parsePolicyText(
  text: string,
  file: string,
  limits: LoadLimits = DEFAULT_LOAD_LIMITS,
): SourcedDocument[] {
  if (text.includes('\u0000')) {
    throw new ErpguardError(
      ErrorCode.ParseError,
      `${file}: not a text file (contains NUL bytes); expected YAML or JSON`,
    );
  }
  let raw: unknown[];
  try {
    raw = loadAll(text, {
      filename: file,
      maxAliases: limits.maxAliases,
      maxDepth: limits.maxDepth,
      maxTotalMergeKeys: 1_000,
    });
  } catch (error: unknown) {
    throw new ErpguardError(ErrorCode.ParseError, yamlErrorMessage(error, file), { cause: error });
  }
  checkExpandedSize(raw, file, limits.maxNodes);
  const lines = documentStartLines(text);
  const documents: SourcedDocument[] = [];
  raw.forEach((value, index) => {
    if (value === null || value === undefined) return;
    const line = lines[index];
    const base = { file, ...(line === undefined ? {} : { line }) };
    if (isListObject(value)) {
      value.items.forEach((item, itemIndex) => {
        documents.push({ ...base, index: `${index}.${itemIndex}`, value: item });
        checkCount(documents.length, file, limits);
      });
      return;
    }
    documents.push({ ...base, index: String(index), value });
    checkCount(documents.length, file, limits);
  });
  return documents;
}

function checkCount(count: number, file: string, limits: LoadLimits): void {
  if (count > limits.maxDocuments) {
    throw new ErpguardError(
      ErrorCode.TooManyItems,
      `${file}: more than ${limits.maxDocuments} policies in one input; split it into several files`,
    );
  }
}

/** Walks the parsed value with a node budget, so alias chains cannot make later walks explode. */
function checkExpandedSize(root: unknown, file: string, maxNodes: number): void {
  let budget = maxNodes;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    budget -= 1;
    if (budget < 0) {
      throw new ErpguardError(
        ErrorCode.InputTooLarge,
        `${file}: expands to more than ${maxNodes} values (YAML aliases?); policies need no aliases`,
      );
    }
    if (Array.isArray(node)) stack.push(...(node as unknown[]));
    else if (node !== null && typeof node === 'object')
      stack.push(...Object.values(node as Record<string, unknown>));
  }
}

function isListObject(value: unknown): value is { kind: string; items: unknown[] } {
  if (typeof value !== 'object' || value === null) return false;
  const kind = (value as { kind?: unknown }).kind;
  const items = (value as { items?: unknown }).items;
  return (kind === 'List' || kind === 'ErpIntegrationPolicyList') && Array.isArray(items);
}

function yamlErrorMessage(error: unknown, file: string): string {
  if (error instanceof YAMLException) {
    const mark = (error as { mark?: { line?: number; column?: number } }).mark;
    const reason = (error as { reason?: string }).reason ?? 'invalid YAML';
    if (mark && typeof mark.line === 'number' && typeof mark.column === 'number') {
      return `${file}:${mark.line + 1}:${mark.column + 1}: ${reason}`;
    }
    return `${file}: ${reason}`;
  }
  return `${file}: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * One-based start line of each document: line 1 for the first, the line after each `---` marker
 * otherwise. Only used to point users at the right place; a `---` inside a block scalar is rare in
 * policies and would at worst shift a line number.
 */
function documentStartLines(text: string): number[] {
  const starts: number[] = [];
  const lines = text.split('\n');
  let sawContent = false;
  lines.forEach((line, index) => {
    if (/^---(\s|$)/.test(line)) {
      starts.push(index + 2);
      return;
    }
    if (!sawContent && line.trim() !== '' && !line.trimStart().startsWith('#')) {
      sawContent = true;
      if (starts.length === 0) starts.push(index + 1);
    }
  });
  return starts;
}
