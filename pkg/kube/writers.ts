/**
 * The controller's writes: policy status and NetworkPolicies by server-side apply under one fixed
 * field manager, and Events (events.k8s.io/v1).
 *
 * Server-side apply with `force: true` makes every write idempotent and declarative: the body is
 * the complete set of fields erpguard owns, so a field left out of the next apply (an approval
 * that no longer parses, an emptied dependents list) is removed by the API server, and nobody
 * else's fields are touched. Callers write only when the status differs semantically, so a
 * steady state produces no writes at all.
 */
import { randomBytes } from 'node:crypto';

import { V1MicroTime } from '@kubernetes/client-node';

import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy, ErpIntegrationPolicyStatus } from '../api/v1alpha1/index.js';

import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { isNotFound, kubeError } from './errors.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE, projectMeta } from './resources.js';
import type { ObjectMetaLite } from './resources.js';

/** The one field manager of every controller write (status, NetworkPolicies). */
export const FIELD_MANAGER = 'erpguard-controller';
/** events.k8s.io reportingController. */
export const REPORTING_CONTROLLER = 'erpguard.io/controller';

export interface PolicyRef {
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export type ApplyResult =
  { applied: true; resourceVersion?: string } | { applied: false; reason: 'NotFound' };

/** Writes `status` of ErpIntegrationPolicies through the status subresource. */
export class KubePolicyStatusWriter {
  constructor(private readonly clients: KubeClients) {}

  async applyStatus(policy: PolicyRef, status: ErpIntegrationPolicyStatus): Promise<ApplyResult> {
    const { name, namespace, uid } = policy.metadata;
    if (namespace === undefined)
      throw kubeError('apply status', new Error('policy has no namespace'));
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      // The uid makes the apply fail instead of landing on a recreated namesake.
      metadata: { name, namespace, ...(uid !== undefined ? { uid } : {}) },
      status,
    };
    try {
      const res = (await this.clients.custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name,
          body,
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        requestOptions(this.clients, 'apply'),
      )) as Partial<ErpIntegrationPolicy> | undefined;
      const rv = res?.metadata?.resourceVersion;
      return { applied: true, ...(rv !== undefined ? { resourceVersion: rv } : {}) };
    } catch (error) {
      // Deleted meanwhile: nothing to write; the informer's delete event follows.
      if (isNotFound(error)) return { applied: false, reason: 'NotFound' };
      throw kubeError(`apply status of ${namespace}/${name}`, error);
    }
  }
}

export interface EventInput {
  type: 'Normal' | 'Warning';
  /** CamelCase, stable (e.g. Approved, ApprovalVoided). */
  reason: string;
  /** What the controller did (CamelCase), e.g. Verify. */
  action: string;
  note: string;
}

export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string };
}

const MAX_NOTE_BYTES = 1024; // API server limit for events.k8s.io/v1 note

function truncateUtf8(text: string, maxBytes: number): string {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return text;
  // Cut on a character boundary, then mark the cut.
  let end = maxBytes - 3;
  while (end > 0 && ((buf[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return `${buf.subarray(0, end).toString('utf8')}...`;
}

/** Emits events.k8s.io/v1 Events about objects (transitions only; callers decide when). */
export class KubeEventRecorder {
  constructor(
    private readonly clients: KubeClients,
    private readonly reportingInstance: string,
    private readonly now: () => number = Date.now,
  ) {}

  async record(subject: EventSubject, event: EventInput): Promise<void> {
    const namespace = subject.metadata.namespace ?? 'default';
    const nowMs = this.now();
    // client-go names events <object>.<unique hex>; the object part is cut to stay a valid name.
    const suffix = `${nowMs.toString(16)}${randomBytes(4).toString('hex')}`;
    const name = `${subject.metadata.name.slice(0, 253 - suffix.length - 1)}.${suffix}`;
    try {
      await this.clients.events.createNamespacedEvent(
        {
          namespace,
          body: {
            apiVersion: 'events.k8s.io/v1',
            kind: 'Event',
            metadata: { name, namespace },
            eventTime: new V1MicroTime(nowMs),
            reportingController: REPORTING_CONTROLLER,
            reportingInstance: this.reportingInstance.slice(0, 128),
            action: event.action,
            reason: event.reason,
            type: event.type,
            note: truncateUtf8(event.note, MAX_NOTE_BYTES),
            regarding: {
              apiVersion: subject.apiVersion,
              kind: subject.kind,
              name: subject.metadata.name,
              namespace,
              ...(subject.metadata.uid !== undefined ? { uid: subject.metadata.uid } : {}),
              ...(subject.metadata.resourceVersion !== undefined
                ? { resourceVersion: subject.metadata.resourceVersion }
                : {}),
            },
          },
        },
        requestOptions(this.clients),
      );
    } catch (error) {
      throw kubeError(`create event ${namespace}/${name}`, error);
    }
  }
}

/** A NetworkPolicy manifest as the planner produces it (plain JSON). */
export interface NetworkPolicyManifest {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: Record<string, unknown>;
}

export class KubeNetworkPolicyWriter {
  constructor(private readonly clients: KubeClients) {}

  /** The live object's metadata, or null when it does not exist (for the name-taken check). */
  async read(namespace: string, name: string): Promise<ObjectMetaLite | null> {
    try {
      const np = await this.clients.networking.readNamespacedNetworkPolicy(
        { namespace, name },
        requestOptions(this.clients),
      );
      return projectMeta(np.metadata);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw kubeError(`read NetworkPolicy ${namespace}/${name}`, error);
    }
  }

  async apply(manifest: NetworkPolicyManifest): Promise<void> {
    const { name, namespace } = manifest.metadata;
    if (manifest.metadata.labels[LABEL_MANAGED_BY] !== MANAGED_BY_VALUE) {
      // Without the label the informer would never see it and garbage collection would miss it.
      throw kubeError(
        `apply NetworkPolicy ${namespace}/${name}`,
        new Error('missing managed-by label'),
      );
    }
    try {
      await this.clients.networking.patchNamespacedNetworkPolicy(
        { namespace, name, body: manifest, fieldManager: FIELD_MANAGER, force: true },
        requestOptions(this.clients, 'apply'),
      );
    } catch (error) {
      throw kubeError(`apply NetworkPolicy ${namespace}/${name}`, error);
    }
  }

  /** Deletes one NetworkPolicy; `uid` guards against deleting a recreated namesake. */
  async delete(namespace: string, name: string, uid?: string): Promise<void> {
    try {
      await this.clients.networking.deleteNamespacedNetworkPolicy(
        {
          namespace,
          name,
          ...(uid !== undefined ? { body: { preconditions: { uid } } } : {}),
        },
        requestOptions(this.clients),
      );
    } catch (error) {
      if (isNotFound(error)) return;
      throw kubeError(`delete NetworkPolicy ${namespace}/${name}`, error);
    }
  }
}
