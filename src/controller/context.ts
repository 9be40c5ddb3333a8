/**
 * @module controller/context
 * The seam every cluster reconciler is written against. `ipkeeper controller` (src/controller/main.ts)
 * builds one `ControllerContext`, elects a leader with a `coordination.k8s.io` Lease, and starts every
 * `Reconciler` while it leads (stops them when it loses the lease). Tests build the same context
 * against a real API server with `makeContext`.
 *
 * `@kubernetes/client-node` is only a type import here; `makeContext` loads it lazily, so importing
 * this module costs nothing (the CNI plugin must never load the Kubernetes client).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Store } from '../store/store.ts';
import { reuseConnections } from '../cluster/connections.ts';

export interface ControllerLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The object a Kubernetes Event is about. */
export interface EventTarget {
  apiVersion: string;
  kind: string;
  /**
   * Absent for cluster-scoped objects; their events go to `default`: the API server (v1.20
   * ValidateEvent) refuses an event about a cluster-scoped object in any other namespace.
   */
  namespace?: string;
  name: string;
  uid?: string;
}

export interface ControllerEvent {
  regarding: EventTarget;
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. `IPReclaimed`, `PoolResized`. */
  reason: string;
  message: string;
}

export interface ControllerContext {
  /** The loaded kubeconfig: informers and API calls. */
  kc: KubeConfig;
  /** Our objects (IPPool, IPClaim, Endpoint, ...) through the `kubernetes` store. */
  store: Store;
  log: ControllerLogger;
  /** Namespace of the controller itself (its Lease). */
  namespace: string;
  /** Records a Kubernetes Event. Never throws: a lost event is logged, not fatal. */
  event(e: ControllerEvent): Promise<void>;
  now(): number;
}

/** One control loop. `start` resolves once it has synced; `stop` is idempotent. */
export interface Reconciler {
  readonly name: string;
  start(ctx: ControllerContext): Promise<void>;
  stop(): Promise<void>;
}

const silent: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Builds a context from a kubeconfig path (undefined: $KUBECONFIG, in-cluster, ~/.kube/config).
 * @throws Error when the kubeconfig cannot be read.
 */
export async function makeContext(opts: {
  kubeconfig?: string;
  store: Store;
  namespace?: string;
  log?: ControllerLogger;
  now?: () => number;
}): Promise<ControllerContext> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  // One keep-alive agent instead of client-node's agent per request (cluster/connections.ts).
  reuseConnections(kc);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const log = opts.log ?? silent;
  const namespace = opts.namespace ?? 'default';
  const now = opts.now ?? (() => Date.now());
  let seq = 0;
  return {
    kc,
    store: opts.store,
    log,
    namespace,
    now,
    async event(e: ControllerEvent): Promise<void> {
      const ns = e.regarding.namespace ?? 'default';
      const at = new Date(now());
      try {
        await core.createNamespacedEvent({
          namespace: ns,
          body: {
            metadata: {
              name: `${e.regarding.name}.${at.getTime().toString(16)}${(seq++).toString(16)}`,
              namespace: ns,
            },
            involvedObject: {
              apiVersion: e.regarding.apiVersion,
              kind: e.regarding.kind,
              name: e.regarding.name,
              ...(e.regarding.namespace ? { namespace: e.regarding.namespace } : {}),
              ...(e.regarding.uid ? { uid: e.regarding.uid } : {}),
            },
            type: e.type,
            reason: e.reason,
            message: e.message,
            source: { component: 'ipkeeper-controller' },
            firstTimestamp: at,
            lastTimestamp: at,
            count: 1,
          },
        });
      } catch (err) {
        // An event is a courtesy to the operator; the reconcile it reports has already happened.
        log.warn({ err: String(err), reason: e.reason, name: e.regarding.name }, 'could not record event');
      }
    },
  };
}
