/**
 * @module cli/main
 * `ipkeeper`: run the agent, apply/get/delete objects through it, show usage, install the CNI plugin.
 * Errors print one line `error: <message>` to stderr and exit 1 (2 for usage errors).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { yamlText } from './yaml-out.ts';
import { isIpamError, IpamError } from '../errors.ts';
import { DEFAULT_SOCKET } from '../cni/protocol.ts';
import { CONVERTERS } from '../api/convert.ts';
import {
  resolveKind,
  KINDS,
  type AnyObject,
  type IPClaim,
  type IPPool,
  type ReservedIP,
} from '../api/kinds.ts';
import type { PoolUsage } from '../ipam/engine.ts';
import { call, SOCKET_ENV } from './client.ts';
import { ETCD_PASSWORD_ENV, etcdConnection } from '../store/etcd-options.ts';
import type { OpenStoreOptions } from '../store/open.ts';
import { renderTable } from './table.ts';
import { nodePoolTable, vipTable } from './vip-nodepool.ts';
import type { NodePool, VIP } from '../api/kinds.ts';
import { registerCheck } from './check.ts';
import { progressOption, withProgress } from './progress.ts';
import { listVips, registerDescribe, withVipColumn } from './describe.ts';
import { endpointTable, registerReclaim } from './reclaim.ts';
import type { Endpoint } from '../api/kinds.ts';
import { networkConfigTable, registerNetconfig } from './netconfig.ts';
import type { NetworkConfig } from '../api/kinds.ts';

const DEFAULT_STORE = 'sqlite:/var/lib/ipkeeper/ipkeeper.db';

function socketOf(opts: { socket?: string }): string {
  return opts.socket ?? process.env[SOCKET_ENV] ?? DEFAULT_SOCKET;
}

function readSource(path: string): { text: string; source: string }[] {
  if (path === '-') return [{ text: readFileSync(0, 'utf8'), source: 'stdin' }];
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new IpamError('INVALID_OBJECT', `-f ${path}: no such file or directory`);
  }
  if (st.isDirectory()) {
    return readdirSync(path)
      .filter((n) => /\.(ya?ml|json)$/.test(n))
      .sort()
      .flatMap((n) => readSource(join(path, n)));
  }
  return [{ text: readFileSync(path, 'utf8'), source: path }];
}

function kindOrFail(word: string): string {
  const info = resolveKind(word);
  if (!info) {
    const names = Object.values(KINDS).map((k) => k.singular);
    throw new IpamError('INVALID_OBJECT', `unknown kind "${word}"; use one of ${names.join(', ')}`);
  }
  return info.kind;
}

async function print(obj: unknown, output: string): Promise<void> {
  if (output === 'json') console.log(JSON.stringify(obj, null, 2));
  else console.log(await yamlText(obj));
}

function table(kind: string, items: AnyObject[], wide: boolean, usage: PoolUsage[]): string {
  if (kind === 'VIP') return vipTable(items as VIP[], wide);
  if (kind === 'Endpoint') return endpointTable(items as Endpoint[], wide);
  if (kind === 'NodePool') return nodePoolTable(items as NodePool[], wide);
  if (kind === 'NetworkConfig') return networkConfigTable(items as NetworkConfig[], wide);
  if (kind === 'IPPool') {
    const head = ['NAME', 'SUBNET', 'USED', 'TOTAL', 'FREE', 'RESERVED', 'DEFAULT', 'DISABLED'];
    if (wide) head.push('NETWORK', 'VLAN', 'GATEWAY', 'IPS');
    const rows = (items as IPPool[]).map((p) => {
      const u = usage.find((x) => x.name === p.metadata.name);
      const row = [
        p.metadata.name,
        p.spec.subnet,
        String(u?.used ?? '?'),
        String(u?.total ?? '?'),
        String(u?.free ?? '?'),
        String(u?.reserved ?? '?'),
        String(p.spec.default === true),
        String(p.spec.disable === true),
      ];
      if (wide) {
        row.push(
          p.spec.network ?? 'default',
          String(p.spec.vlan ?? ''),
          p.spec.gateway ?? '',
          (p.spec.ips ?? []).join(','),
        );
      }
      return row;
    });
    return renderTable(head, rows);
  }
  if (kind === 'ReservedIP') {
    return renderTable(
      ['NAME', 'IPS'],
      (items as ReservedIP[]).map((r) => [r.metadata.name, r.spec.ips.join(',')]),
    );
  }
  const head = ['IP', 'POOL', 'OWNER', 'INTERFACE', 'NODE'];
  if (wide) head.push('NETWORK', 'CONTAINER', 'CREATED');
  return renderTable(
    head,
    (items as IPClaim[]).map((c) => {
      const o = c.spec.owner;
      const row = [
        c.spec.ip,
        c.spec.pool,
        `${o.kind}/${o.namespace ? `${o.namespace}/` : ''}${o.name}`,
        c.spec.ifName ?? '',
        c.spec.node ?? '',
      ];
      if (wide) row.push(c.spec.network, (c.spec.containerId ?? '').slice(0, 12), c.spec.createdAt);
      return row;
    }),
  );
}

/**
 * One object's path under /v1/objects/<plural>/: a namespaced kind's object is NAME or
 * NAMESPACE/NAME (`get endpoint default/web-0`, `delete networkconfig team-a/vlan100`).
 */
function objectPath(word: string, info: { namespaced?: boolean } | undefined, name: string): string {
  if (!info?.namespaced) return encodeURIComponent(name);
  if (!/^[^/]+(\/[^/]+)?$/.test(name)) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${word} "${name}" must be NAME or NAMESPACE/NAME, e.g. default/web-0`,
    );
  }
  return name.split('/').map(encodeURIComponent).join('/');
}

/** The --etcd-* flags as commander hands them over. */
interface EtcdFlagValues {
  etcdCacert?: string;
  etcdCert?: string;
  etcdKey?: string;
  etcdUser?: string;
  etcdPasswordFile?: string;
  etcdCredentialsCheck: string;
}

/** The flags of a command that may open an etcd store: TLS, user, and how often to re-read them. */
function addEtcdOptions(cmd: Command): Command {
  return cmd
    .option(
      '--etcd-cacert <file>',
      'etcd store: verify the members against this CA certificate (PEM); implies TLS',
    )
    .option(
      '--etcd-cert <file>',
      'etcd store: client certificate (PEM) for etcd --client-cert-auth; with --etcd-key; implies TLS',
    )
    .option('--etcd-key <file>', 'etcd store: private key (PEM) of --etcd-cert')
    .option(
      '--etcd-user <name>',
      `etcd store: authenticate as this etcd user; the password from env ${ETCD_PASSWORD_ENV} or --etcd-password-file`,
    )
    .option('--etcd-password-file <file>', 'etcd store: file holding the password of --etcd-user')
    .option(
      '--etcd-credentials-check <duration>',
      'etcd store: read the --etcd-cacert/--etcd-cert/--etcd-key and --etcd-password-file files again this often, and connect with them when they changed (renewed certificates, a new password); 0: never (10s, 1m)',
      '1m',
    );
}

/**
 * The etcd store's options from the --etcd-* flags: the files are read and checked now (a bad one
 * stops the command here, naming its flag), and read again while it runs, so renewed certificates
 * and a changed password file are used without a restart.
 */
async function etcdStoreOptions(o: EtcdFlagValues): Promise<NonNullable<OpenStoreOptions['etcd']>> {
  const { parseDuration } = await import('../agent/duration.ts');
  const flags = {
    ...(o.etcdCacert !== undefined ? { cacert: o.etcdCacert } : {}),
    ...(o.etcdCert !== undefined ? { cert: o.etcdCert } : {}),
    ...(o.etcdKey !== undefined ? { key: o.etcdKey } : {}),
    ...(o.etcdUser !== undefined ? { user: o.etcdUser } : {}),
    ...(o.etcdPasswordFile !== undefined ? { passwordFile: o.etcdPasswordFile } : {}),
  };
  const checkMs = parseDuration('--etcd-credentials-check', o.etcdCredentialsCheck, 0);
  const files = (o.etcdCacert ?? o.etcdCert ?? o.etcdPasswordFile) !== undefined;
  if (!files && o.etcdCredentialsCheck !== '1m') {
    throw new IpamError(
      'INVALID_CONFIG',
      `--etcd-credentials-check ${o.etcdCredentialsCheck} applies to the files of --etcd-cacert, --etcd-cert/--etcd-key or --etcd-password-file; add them or drop it`,
    );
  }
  if (checkMs > 0 && checkMs < 100) {
    throw new IpamError(
      'INVALID_CONFIG',
      `--etcd-credentials-check ${o.etcdCredentialsCheck} is too often: give 100ms or more (1m is plenty), or 0 to turn it off`,
    );
  }
  return {
    ...etcdConnection(flags),
    ...(files && checkMs > 0
      ? { credentials: () => etcdConnection(flags), credentialsCheckMs: checkMs }
      : {}),
  };
}

export function buildCli(): Command {
  const program = new Command('ipkeeper')
    .description('IP address management for Kubernetes underlay networks')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const socketOpt = () =>
    new Option('--socket <path>', `agent socket (env ${SOCKET_ENV})`).default(undefined, DEFAULT_SOCKET);

  const agentCmd = program
    .command('agent')
    .description('run the node agent: serve the CNI plugin on a unix socket and allocate from the store')
    .option(
      '--store <url>',
      'sqlite:PATH | memory: | etcd://host:port[,host:port...][/prefix]',
      DEFAULT_STORE,
    )
    .addOption(socketOpt())
    .option('--node <name>', "this node's name (default: the host name)")
    .option(
      '--kubeconfig <path>',
      'read pods, namespaces and nodes from Kubernetes for pool choice (implied by --store kubernetes:)',
    )
    .option(
      '--in-cluster',
      'as --kubeconfig, through the cluster the agent runs in (its service account; $KUBECONFIG when set): for an agent pod whose store is etcd',
    )
    .option(
      '--listen <host:port>',
      'also serve /healthz, /readyz, /metrics and the live pool map page (/) over TCP, e.g. 127.0.0.1:9610',
    )
    .option('--log-level <level>', 'pino level: trace, debug, info, warn, error', 'info');
  addEtcdOptions(agentCmd)
    .option(
      '--claims-cache <file>',
      'keep the claims in this file between runs: written at a clean stop and while running (see --claims-cache-interval), read at the next start, which then asks the store only for what changed (kubernetes and etcd stores)',
    )
    .option(
      '--claims-cache-interval <duration>',
      'with --claims-cache: rewrite the file this often while the claims change, for a restart after a crash (30s, 2m; 0: only at a clean stop)',
      '30s',
    )
    .option(
      '--gc-min-age <ms>',
      'CNI GC leaves claims younger than this alone (an ADD may be in flight)',
      '60000',
    )
    .option('--max-rate <n>', 'CNI requests per second before the agent answers BUSY (CNI 11)', '5000')
    .option('--max-in-flight <n>', 'CNI requests served at once before the agent answers BUSY', '1024')
    .option(
      '--node-pool',
      'node-pool mode (seed 004): allocate only from the NodePool named after this node, and report its status.used',
    )
    .option(
      '--node-pool-status-interval <duration>',
      'node-pool mode: write status.used at most this often (15s, 500ms, 1m)',
      '15s',
    )
    .option(
      '--node-pool-health-check',
      'node-pool mode: the node health-checks with one of its addresses, so readiness needs two',
    )
    .addHelpText(
      'after',
      '\nExample:\n  ipkeeper agent --store sqlite:/var/lib/ipkeeper/ipkeeper.db --socket /run/ipkeeper/ipkeeper.sock',
    )
    .action(
      async (
        o: {
          store: string;
          socket?: string;
          node?: string;
          listen?: string;
          logLevel: string;
          gcMinAge: string;
          maxRate: string;
          maxInFlight: string;
          kubeconfig?: string;
          inCluster?: boolean;
          nodePool?: boolean;
          nodePoolStatusInterval: string;
          nodePoolHealthCheck?: boolean;
          claimsCache?: string;
          claimsCacheInterval: string;
        } & EtcdFlagValues,
      ) => {
        const whole = (flag: string, v: string, min: number): number => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < min) {
            throw new IpamError('INVALID_CONFIG', `${flag} ${v} must be a whole number of at least ${min}`);
          }
          return n;
        };
        if (!o.nodePool && (o.nodePoolHealthCheck || o.nodePoolStatusInterval !== '15s')) {
          throw new IpamError(
            'INVALID_CONFIG',
            '--node-pool-health-check and --node-pool-status-interval apply to node-pool mode; add --node-pool',
          );
        }
        const maxRate = whole('--max-rate', o.maxRate, 1);
        const maxInFlight = whole('--max-in-flight', o.maxInFlight, 1);
        const gcMinAgeMs = Number(o.gcMinAge);
        if (!Number.isInteger(gcMinAgeMs) || gcMinAgeMs < 0) {
          throw new IpamError(
            'INVALID_CONFIG',
            `--gc-min-age ${o.gcMinAge} must be a whole number of milliseconds, e.g. 60000`,
          );
        }
        if (!o.claimsCache && o.claimsCacheInterval !== '30s') {
          throw new IpamError(
            'INVALID_CONFIG',
            `--claims-cache-interval ${o.claimsCacheInterval} applies to the claims cache; add --claims-cache <file>`,
          );
        }
        if (o.inCluster && o.kubeconfig) {
          throw new IpamError(
            'INVALID_CONFIG',
            `--in-cluster and --kubeconfig ${o.kubeconfig} both say where Kubernetes is; keep one`,
          );
        }
        const { parseDuration } = await import('../agent/duration.ts');
        const claimsCacheIntervalMs = parseDuration('--claims-cache-interval', o.claimsCacheInterval, 0);
        const etcd = await etcdStoreOptions(o);
        const { startAgent } = await import('../agent/server.ts');
        const agent = await startAgent({
          store: o.store,
          storeOptions: { etcd },
          socket: socketOf(o),
          ...(o.node ? { node: o.node } : {}),
          ...(o.listen ? { listen: o.listen } : {}),
          ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : o.inCluster ? { kubeconfig: true as const } : {}),
          ...(o.claimsCache ? { claimsCache: o.claimsCache, claimsCacheIntervalMs } : {}),
          logLevel: o.logLevel,
          gcMinAgeMs,
          maxRate,
          maxInFlight,
          ...(o.nodePool
            ? {
                nodePool: true,
                nodePoolStatusIntervalMs: (await import('../agent/node-pool.ts')).parseStatusInterval(
                  o.nodePoolStatusInterval,
                ),
                nodePoolHealthCheck: o.nodePoolHealthCheck === true,
              }
            : {}),
        });
        const stop = async (): Promise<void> => {
          await agent.close();
          process.exit(0);
        };
        process.once('SIGINT', () => void stop());
        process.once('SIGTERM', () => void stop());
      },
    );

  const controllerCmd = program
    .command('controller')
    .description(
      'run the cluster controller (Kubernetes mode): leader-elected reconcilers and the admission webhook',
    )
    .option('--kubeconfig <path>', 'kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)')
    .option(
      '--store <url>',
      "where pools and claims are: kubernetes: (this cluster's API server) or the agents' etcd://host:port[,host:port...][/prefix], with --no-webhook",
      'kubernetes:',
    );
  addEtcdOptions(controllerCmd)
    .option(
      '--namespace <ns>',
      "namespace of the Lease and of events about cluster-scoped objects (default: $POD_NAMESPACE, the pod's namespace, else ipkeeper-system)",
    )
    .option('--id <identity>', 'leader-election identity (default: <hostname>-<pid>)')
    .option(
      '--lease-name <name>',
      'coordination.k8s.io Lease to elect the leader with',
      'ipkeeper-controller',
    )
    .option('--lease-duration <s>', 'seconds a leader that stops renewing keeps the lease', '15')
    .option(
      '--listen <host:port>',
      'serve /healthz, /readyz, /metrics and the live pool map page (/) of the whole cluster, e.g. 0.0.0.0:9611',
    )
    .option(
      '--no-webhook',
      'serve no admission webhook and do not look for its configuration (Helm: webhook.enabled=false)',
    )
    .option('--webhook-listen <host:port>', 'admission webhook (HTTPS) address', '0.0.0.0:9443')
    .option(
      '--webhook-cert-dir <dir>',
      'tls.crt, tls.key (and ca.crt) for the webhook; default: a self-signed CA made at start',
    )
    .option(
      '--webhook-config <name>',
      'ValidatingWebhookConfiguration whose caBundle this controller keeps',
      'ipkeeper',
    )
    .option(
      '--webhook-service <ns/name>',
      'Service the API server reaches the webhook through (namespace/name[:port]); used for the certificate names and when creating the configuration',
    )
    .option('--webhook-url <url>', 'or the URL the API server calls, e.g. https://127.0.0.1:9443/validate')
    .option('--log-level <level>', 'pino level: trace, debug, info, warn, error', 'info')
    .addHelpText(
      'after',
      '\nExample:\n  ipkeeper controller --namespace ipkeeper-system --webhook-service ipkeeper-system/ipkeeper-webhook --listen 0.0.0.0:9611',
    )
    .action(
      async (
        o: {
          kubeconfig?: string;
          namespace?: string;
          id?: string;
          leaseName: string;
          leaseDuration: string;
          listen?: string;
          webhookListen: string;
          webhookCertDir?: string;
          webhookConfig: string;
          webhookService?: string;
          webhookUrl?: string;
          webhook: boolean;
          logLevel: string;
          store: string;
        } & EtcdFlagValues,
      ) => {
        const leaseDurationS = Number(o.leaseDuration);
        if (!Number.isInteger(leaseDurationS) || leaseDurationS < 3) {
          throw new IpamError(
            'INVALID_CONFIG',
            `--lease-duration ${o.leaseDuration} must be a whole number of seconds, at least 3 (default 15)`,
          );
        }
        if (!/^(kubernetes|k8s|etcd):/.test(o.store)) {
          throw new IpamError(
            'INVALID_CONFIG',
            `--store ${o.store}: the controller works on kubernetes: (the default) or the agents' etcd://host:port[,host:port...][/prefix]`,
          );
        }
        const etcd = await etcdStoreOptions(o);
        if (!o.store.startsWith('etcd:') && (etcd.tls || etcd.auth)) {
          throw new IpamError(
            'INVALID_CONFIG',
            `the --etcd-* TLS and user flags apply to an etcd:// store, not to "${o.store}"; drop them or use --store etcd://host:port`,
          );
        }
        const { runController } = await import('../controller/main.ts');
        const controller = await runController({
          ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
          ...(/^(kubernetes|k8s):/.test(o.store) ? {} : { storeUrl: o.store, storeOptions: { etcd } }),
          ...(o.namespace ? { namespace: o.namespace } : {}),
          ...(o.id ? { id: o.id } : {}),
          leaseName: o.leaseName,
          leaseDurationS,
          ...(o.listen ? { listen: o.listen } : {}),
          webhookListen: o.webhookListen,
          ...(o.webhook === false ? { noWebhook: true } : {}),
          ...(o.webhookCertDir ? { webhookCertDir: o.webhookCertDir } : {}),
          webhookConfig: o.webhookConfig,
          ...(o.webhookService ? { webhookService: o.webhookService } : {}),
          ...(o.webhookUrl ? { webhookUrl: o.webhookUrl } : {}),
          logLevel: o.logLevel,
        });
        const stop = async (): Promise<void> => {
          await controller.close();
          process.exit(0);
        };
        process.once('SIGINT', () => void stop());
        process.once('SIGTERM', () => void stop());
      },
    );

  program
    .command('apply')
    .description(
      'create or update objects from YAML/JSON: ipkeeper kinds, or Spiderpool, Kube-OVN and Cilium ones',
    )
    .requiredOption('-f, --filename <path...>', 'file, directory, or - for stdin')
    .addOption(socketOpt())
    .addOption(progressOption())
    .addHelpText(
      'after',
      `\nAlso reads (converted): ${Object.keys(CONVERTERS)
        .map((k) => k.slice(k.lastIndexOf('/') + 1))
        .join(', ')}\n` +
        '\nExamples:\n  ipkeeper apply -f pools.yaml\n  ipkeeper apply -f examples/seed-000/ --progress\n  cat pool.yaml | ipkeeper apply -f -',
    )
    .action(async (o: { filename: string[]; socket?: string; progress?: boolean }) => {
      // One request for all objects, on purpose: the agent validates them all before writing any
      // (bad input changes nothing), so only reading is counted; the agent's part is timed.
      await withProgress({ label: 'apply', phase: 'reading', force: o.progress === true }, async (p) => {
        const sources = o.filename.flatMap(readSource);
        const { parseManifests } = await import('../api/manifests.ts');
        p.stage('files parsed', sources.length);
        const objects = sources.flatMap(({ text, source }) => {
          const docs = parseManifests(text, source);
          p.add();
          return docs.map((c) => c.object);
        });
        if (objects.length === 0) throw new IpamError('INVALID_OBJECT', 'no objects found in the input');
        p.stage(`waiting for the agent to apply ${objects.length} object(s)`);
        const r = await call<{ results: { kind: string; name: string; action: string }[] }>(
          socketOf(o),
          'POST',
          '/v1/apply',
          { objects },
        );
        p.clear();
        for (const x of r.results) console.log(`${x.kind.toLowerCase()}/${x.name} ${x.action}`);
        const n = (a: string): number => r.results.filter((x) => x.action === a).length;
        return {
          result: undefined,
          summary: `${objects.length} object(s): ${n('created')} created, ${n('configured')} configured, ${n('unchanged')} unchanged`,
        };
      });
    });

  program
    .command('get')
    .description('list objects, or show one')
    .argument('<kind>', 'ippool | reservedip | ipclaim (plural and short names work too)')
    .argument('[name]')
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['table', 'wide', 'yaml', 'json'])
        .default('table'),
    )
    .addOption(socketOpt())
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper get ippools\n  ipkeeper get ippool test-ippool -o yaml\n  ipkeeper get ipclaims -o wide',
    )
    .action(async (word: string, name: string | undefined, o: { output: string; socket?: string }) => {
      const kind = kindOrFail(word);
      const info = KINDS[kind];
      const socket = socketOf(o);
      const one = name === undefined ? '' : objectPath(word, info, name);
      const items = name
        ? [await call<AnyObject>(socket, 'GET', `/v1/objects/${info?.plural}/${one}`)]
        : (await call<{ items: AnyObject[] }>(socket, 'GET', `/v1/objects/${info?.plural}`)).items;
      if (o.output === 'json' || o.output === 'yaml') {
        await print(name ? items[0] : { apiVersion: 'v1', kind: 'List', items }, o.output);
        return;
      }
      const usage = kind === 'IPPool' ? await call<PoolUsage[]>(socket, 'GET', '/v1/usage') : [];
      if (items.length === 0) {
        console.error(`No ${info?.plural} found.`);
        return;
      }
      const text = table(kind, items, o.output === 'wide', usage);
      // The VIPs each endpoint's pod is bound to, read from the VIPs now (src/cli/describe.ts).
      console.log(
        kind === 'Endpoint' ? withVipColumn(text, items as Endpoint[], await listVips(socket)) : text,
      );
    });

  program
    .command('delete')
    .description('delete an object')
    .argument('<kind>')
    .argument('<name>')
    .option('--force', 'delete a pool that still holds claims')
    .addOption(socketOpt())
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper delete reservedip test-reservedip\n  ipkeeper delete ippool test-ippool --force   # its claims stay valid until released',
    )
    .action(async (word: string, name: string, o: { force?: boolean; socket?: string }) => {
      const kind = kindOrFail(word);
      const info = KINDS[kind];
      await call(
        socketOf(o),
        'DELETE',
        `/v1/objects/${info?.plural}/${objectPath(word, info, name)}${o.force ? '?force=true' : ''}`,
      );
      console.log(`${kind.toLowerCase()}/${name} deleted`);
    });

  program
    .command('usage')
    .description('every pool: used, free and reserved addresses, with a bar')
    .addOption(socketOpt())
    .option('-o, --output <format>', 'table | json', 'table')
    .addHelpText('after', '\nExamples:\n  ipkeeper usage\n  ipkeeper usage -o json')
    .action(async (o: { socket?: string; output: string }) => {
      const usage = await call<PoolUsage[]>(socketOf(o), 'GET', '/v1/usage');
      if (o.output === 'json') return await print(usage, 'json');
      const bar = (p: PoolUsage): string => {
        const width = 20;
        const n = p.total === 0 ? 0 : Math.round(((p.used + p.reserved) / p.total) * width);
        return `[${'#'.repeat(Math.min(n, width))}${'.'.repeat(Math.max(width - n, 0))}]`;
      };
      console.log(
        renderTable(
          ['POOL', 'SUBNET', 'USED', 'RESERVED', 'FREE', 'TOTAL', 'USAGE'],
          usage.map((p) => [
            p.name,
            p.subnet,
            String(p.used),
            String(p.reserved),
            String(p.free),
            String(p.total),
            bar(p),
          ]),
        ),
      );
    });

  registerDescribe(program);
  registerCheck(program);
  registerReclaim(program);
  registerNetconfig(program);

  program
    .command('completion')
    .description('print a shell completion script')
    .argument('<shell>', 'bash or zsh')
    .addHelpText('after', '\nExample:\n  source <(ipkeeper completion bash)')
    .action(async (shell: string) => {
      const { completionScript } = await import('./completion.ts');
      process.stdout.write(completionScript(program, shell));
    });

  program
    .command('crds')
    .description('print the CustomResourceDefinitions of every ipkeeper kind (kubectl apply -f -)')
    .addHelpText('after', '\nExample:\n  ipkeeper crds | kubectl apply -f -')
    .action(async () => {
      const { crdsYaml } = await import('../api/crd.ts');
      process.stdout.write(crdsYaml());
    });

  program
    .command('install-cni')
    .description('install the self-contained CNI plugin executable as DIR/ipkeeper')
    .option('--dir <dir>', 'CNI bin directory', '/opt/cni/bin')
    .addHelpText('after', '\nExample:\n  ipkeeper install-cni --dir /opt/cni/bin')
    .action(async (o: { dir: string }) => {
      const { installCni } = await import('../cni/install.ts');
      console.log(`installed ${await installCni(o.dir)}`);
    });

  return program;
}

/** Runs the CLI; never throws. */
/**
 * grpc-js gives every TLS connection the target's host as its server name (SNI), an IP address too
 * when the etcd URL names members by address, as it mostly does; Node ignores an IP there (SNI
 * carries host names only, RFC 6066) and prints DEP0123 at the first such connection — a warning
 * about grpc-js that an operator can do nothing about. The certificate is still checked against
 * the IP. That one warning is dropped; every other goes to Node's own handlers as before.
 */
function dropIpServerNameWarning(): void {
  const handlers = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code === 'DEP0123') return;
    for (const h of handlers) h(w);
  });
}

export async function main(argv: string[]): Promise<void> {
  dropIpServerNameWarning();
  const program = buildCli();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      process.exitCode = code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
      return;
    }
    const msg = isIpamError(e) ? e.message : e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${msg}\n`);
    process.exitCode = 1;
  }
}
