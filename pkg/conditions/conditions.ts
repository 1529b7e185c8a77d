/**
 * Conditions the Kubernetes way: merged by type, `observedGeneration` stamped, and
 * `lastTransitionTime` changed only when the status value flips.
 */
import type { Condition, ConditionStatus } from '../api/v1alpha1/index.js';

export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Returns a new list with `input` merged in; conditions of other types are kept as they are. */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  observedGeneration: number | undefined,
  now: Date,
): Condition[] {
  const existing = findCondition(conditions, input.type);
  const lastTransitionTime =
    existing && existing.status === input.status ? existing.lastTransitionTime : now.toISOString();
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime,
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
  };
  const others = (conditions ?? []).filter((c) => c.type !== input.type);
  return [...others, next].sort((a, b) => a.type.localeCompare(b.type));
}

/** True when a consumer should not trust the condition: computed from an older spec. */
export function isStale(condition: Condition | undefined, generation: number | undefined): boolean {
  if (!condition) return true;
  if (generation === undefined || condition.observedGeneration === undefined) return false;
  return condition.observedGeneration < generation;
}
