/**
 * Data-protection selectors: a small, safe subset of JSONPath, enough to name fields in ERP JSON
 * responses, with no filters or scripts (nothing a policy author could use to make the sidecar do
 * unbounded work).
 *
 *   selector := '$' step+
 *   step     := '.' name | '[' '*' ']' | '[' index ']' | "['" quoted-name "']" | '.*'
 *
 * `$.items[*].iban` names the `iban` field of every element of `items`. `.*` and `[*]` match every
 * member of an object or array. The root `$` alone is rejected: masking the whole body is not data
 * protection, it is a denial.
 */

export type SelectorStep =
  { kind: 'field'; name: string } | { kind: 'index'; index: number } | { kind: 'wildcard' };

export type SelectorParse = { ok: true; steps: SelectorStep[] } | { ok: false; message: string };

const NAME = /^[A-Za-z_$][A-Za-z0-9_$-]*/;
const MAX_SELECTOR_LENGTH = 256;
const MAX_STEPS = 32;

export function parseSelector(text: string): SelectorParse {
  if (text.length > MAX_SELECTOR_LENGTH) {
    return { ok: false, message: `must be at most ${MAX_SELECTOR_LENGTH} characters` };
  }
  if (!text.startsWith('$')) return { ok: false, message: "must start with '$'" };
  const steps: SelectorStep[] = [];
  let rest = text.slice(1);
  while (rest.length > 0) {
    if (steps.length >= MAX_STEPS)
      return { ok: false, message: `must have at most ${MAX_STEPS} steps` };
    if (rest.startsWith('..'))
      return { ok: false, message: "recursive descent '..' is not supported" };
    if (rest.startsWith('.*')) {
      steps.push({ kind: 'wildcard' });
      rest = rest.slice(2);
      continue;
    }
    if (rest.startsWith('.')) {
      const name = NAME.exec(rest.slice(1))?.[0];
      if (name === undefined) return { ok: false, message: `invalid field name at '${rest}'` };
      steps.push({ kind: 'field', name });
      rest = rest.slice(1 + name.length);
      continue;
    }
    if (rest.startsWith('[*]')) {
      steps.push({ kind: 'wildcard' });
      rest = rest.slice(3);
      continue;
    }
    const index = /^\[([0-9]{1,6})\]/.exec(rest);
    if (index?.[1] !== undefined) {
      steps.push({ kind: 'index', index: Number(index[1]) });
      rest = rest.slice(index[0].length);
      continue;
    }
    const quoted = /^\['([^'\\\]]+)'\]/.exec(rest);
    if (quoted?.[1] !== undefined) {
      steps.push({ kind: 'field', name: quoted[1] });
      rest = rest.slice(quoted[0].length);
      continue;
    }
    return {
      ok: false,
      message: `unexpected '${rest.slice(0, 16)}': filters and scripts are not supported`,
    };
  }
  if (steps.length === 0) return { ok: false, message: "must select a field below the root '$'" };
  return { ok: true, steps };
}

/** The selector in one canonical spelling (`$['a']` and `$.a` are the same selector). */
export function canonicalSelector(steps: readonly SelectorStep[]): string {
  return (
    '$' +
    steps
      .map((step) => {
        if (step.kind === 'wildcard') return '[*]';
        if (step.kind === 'index') return `[${step.index}]`;
        return NAME.exec(step.name)?.[0] === step.name ? `.${step.name}` : `['${step.name}']`;
      })
      .join('')
  );
}

/**
 * True when every value `inner` can select lies inside a value `outer` selects (outer is a prefix
 * of inner, step by step, with wildcards covering fields and indexes). Used by the lint: once
 * `outer` has replaced a value, `inner` can never match inside it.
 */
export function selectorCovers(
  outer: readonly SelectorStep[],
  inner: readonly SelectorStep[],
): boolean {
  if (outer.length > inner.length) return false;
  return outer.every((step, i) => {
    const other = inner[i];
    if (other === undefined) return false;
    if (step.kind === 'wildcard') return true;
    if (step.kind === 'field') return other.kind === 'field' && other.name === step.name;
    return other.kind === 'index' && other.index === step.index;
  });
}

/**
 * Replaces, in place, every value the selector names with `replace(value)`. Returns how many values
 * were replaced. Only objects and arrays that exist are walked: a selector never creates fields.
 */
export function replaceSelected(
  root: unknown,
  steps: readonly SelectorStep[],
  replace: (value: unknown) => unknown,
): number {
  let count = 0;
  const visit = (node: unknown, depth: number): void => {
    const step = steps[depth];
    if (step === undefined || node === null || typeof node !== 'object') return;
    const last = depth === steps.length - 1;
    const apply = (container: Record<string, unknown> | unknown[], key: string | number): void => {
      const child = (container as Record<string | number, unknown>)[key];
      if (child === undefined) return;
      if (last) {
        (container as Record<string | number, unknown>)[key] = replace(child);
        count += 1;
      } else {
        visit(child, depth + 1);
      }
    };
    if (Array.isArray(node)) {
      if (step.kind === 'wildcard') node.forEach((_, i) => apply(node, i));
      else if (step.kind === 'index' && step.index < node.length) apply(node, step.index);
      return;
    }
    const object = node as Record<string, unknown>;
    if (step.kind === 'wildcard') Object.keys(object).forEach((key) => apply(object, key));
    else if (step.kind === 'field' && Object.hasOwn(object, step.name)) apply(object, step.name);
  };
  visit(root, 0);
  return count;
}
