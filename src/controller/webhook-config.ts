/**
 * @module controller/webhook-config
 * The ValidatingWebhookConfiguration the controller owns (default name `ipkeeper`): it puts its CA
 * into every webhook's `clientConfig.caBundle`, and creates the configuration when it does not exist
 * and the controller knows where it is reachable (`--webhook-service` or `--webhook-url`).
 *
 * Several replicas, several CAs. Each replica that makes its own self-signed certificate has its own
 * CA, and the API server may reach any replica through the Service. A caBundle is a PEM bundle and
 * the API server trusts every CA in it, so a replica *adds* its CA (keeping the others') rather than
 * replacing the bundle; the bundle keeps the newest `MAX_BUNDLE_CAS` so restarts do not grow it
 * forever, and each replica re-checks every minute that its CA is still there (a Helm upgrade or a
 * crash-looping replica may have pushed it out) and adds it back. With a shared certificate
 * (`--webhook-cert-dir`) every replica adds the same CA, which is then there once.
 *
 * Writes are GET → change → PUT with the resourceVersion read (a conflict re-reads), since a JSON
 * merge patch cannot address one element of `webhooks`.
 *
 * The rules cover IPPool and ReservedIP — what users write. IPClaim and Endpoint are written by the
 * agents on the allocation path: an admission call per claim would add a TLS round trip to every pod
 * start and make allocation depend on the controller being up. (The webhook validates any
 * ipkeeper.io kind it is sent, should an operator add them to the rules.)
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { ControllerLogger } from './context.ts';
import { kubeJson, replyMessage } from './kube.ts';
import { WEBHOOK_PATH } from './webhook.ts';

export const DEFAULT_WEBHOOK_CONFIG = 'ipkeeper';
export const WEBHOOK_NAME = 'validate.ipkeeper.io';
export const MAX_BUNDLE_CAS = 8;
const PUT_ATTEMPTS = 8;
const BASE = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';

/** Where the API server reaches the webhook. */
export type WebhookTarget = { url: string } | { service: { namespace: string; name: string; port: number } };

/** The PEM blocks of a bundle, normalized (so the same CA compares equal however it was wrapped). */
export function pemBlocks(bundle: string): string[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => {
    const body = b.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
    return `-----BEGIN CERTIFICATE-----\n${body.replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END CERTIFICATE-----\n`;
  });
}

/** `bundle` with `ca` added at the end (newest last), at most `max` CAs; unchanged when `ca` is in it. */
export function mergeBundle(bundle: string, ca: string, max = MAX_BUNDLE_CAS): string {
  const blocks = pemBlocks(bundle);
  const mine = pemBlocks(ca);
  if (mine.every((m) => blocks.includes(m))) return bundle;
  const out = [...blocks.filter((b) => !mine.includes(b)), ...mine];
  return out.slice(Math.max(0, out.length - max)).join('');
}

function decode(b64: string | undefined): string {
  return b64 ? Buffer.from(b64, 'base64').toString('utf8') : '';
}

/** The configuration this controller creates when there is none. */
export function webhookConfigObject(name: string, target: WebhookTarget, ca: string): object {
  const clientConfig =
    'url' in target
      ? { url: target.url, caBundle: Buffer.from(ca).toString('base64') }
      : {
          service: { ...target.service, path: WEBHOOK_PATH },
          caBundle: Buffer.from(ca).toString('base64'),
        };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'ipkeeper-controller' } },
    webhooks: [
      {
        name: WEBHOOK_NAME,
        admissionReviewVersions: ['v1', 'v1beta1'],
        sideEffects: 'None',
        failurePolicy: 'Fail',
        timeoutSeconds: 10,
        clientConfig,
        rules: [
          {
            apiGroups: ['ipkeeper.io'],
            apiVersions: ['*'],
            operations: ['CREATE', 'UPDATE'],
            // Objects people write. Not claims, endpoints or node pools: agents write those on the
            // allocation path, which must not wait on (or fail with) the controller.
            resources: ['ippools', 'reservedips', 'subnets', 'vips', 'networkconfigs'],
            scope: '*',
          },
        ],
      },
    ],
  };
}

/**
 * Makes sure `ca` is in the caBundle of every webhook of configuration `name`, creating the
 * configuration when it is missing and `target` is known.
 * @returns what was done.
 * @throws Error when the API server refuses or keeps conflicting.
 */
export async function ensureWebhookCa(
  kc: KubeConfig,
  name: string,
  ca: string,
  target: WebhookTarget | undefined,
  log: ControllerLogger,
): Promise<'created' | 'patched' | 'unchanged' | 'missing'> {
  for (let attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
    const g = await kubeJson(kc, 'GET', `${BASE}/${encodeURIComponent(name)}`);
    if (g.status === 404) {
      if (!target) {
        log.warn(
          { webhookConfig: name },
          'ValidatingWebhookConfiguration not found and neither --webhook-service nor --webhook-url given; admission is not wired up',
        );
        return 'missing';
      }
      const c = await kubeJson(kc, 'POST', BASE, webhookConfigObject(name, target, ca));
      if (c.status === 409) continue;
      if (c.status !== 201 && c.status !== 200)
        throw new Error(`creating ValidatingWebhookConfiguration ${name}: ${replyMessage(c)}`);
      log.info({ webhookConfig: name }, 'created the ValidatingWebhookConfiguration');
      return 'created';
    }
    if (g.status !== 200)
      throw new Error(`reading ValidatingWebhookConfiguration ${name}: ${replyMessage(g)}`);
    const obj = g.body as { webhooks?: { clientConfig?: { caBundle?: string } }[] };
    let changed = false;
    for (const w of obj.webhooks ?? []) {
      w.clientConfig ??= {};
      const have = decode(w.clientConfig.caBundle);
      const want = mergeBundle(have, ca);
      if (want !== have) {
        w.clientConfig.caBundle = Buffer.from(want).toString('base64');
        changed = true;
      }
    }
    if (!changed) return 'unchanged';
    const p = await kubeJson(kc, 'PUT', `${BASE}/${encodeURIComponent(name)}`, obj);
    if (p.status === 409) continue;
    if (p.status !== 200)
      throw new Error(`updating the caBundle of ValidatingWebhookConfiguration ${name}: ${replyMessage(p)}`);
    log.info(
      { webhookConfig: name, webhooks: obj.webhooks?.length ?? 0 },
      'put our CA into the webhook caBundle',
    );
    return 'patched';
  }
  throw new Error(
    `ValidatingWebhookConfiguration ${name} kept changing underneath (${PUT_ATTEMPTS} attempts)`,
  );
}
