/**
 * @module cluster/connections
 * Keep-alive connections for `@kubernetes/client-node`.
 *
 * client-node 1.4 builds a new `https.Agent` for every request (`KubeConfig.createAgent`, reached
 * from `applySecurityAuthentication` by the generated API clients and from `applyToFetchOptions`
 * by `Watch`; upstream kubernetes-client/javascript#2893). No connection is ever reused: each GET
 * pays a TCP connect, a TLS handshake on both ends, and a TLS context built from the PEM files.
 * The agent's ADD path reads through it (a pod the informer has not delivered yet, each pod's
 * owner chain), so a burst of pod starts became a burst of handshakes: 1000 pods on 10 agents
 * opened ~1,500 TLS connections, and creating their TLS contexts alone took ~4.5 s of the agents'
 * CPU (bench/burst.ts, kubernetes; `--cpu-prof` of the agents).
 *
 * `reuseConnections` makes a `KubeConfig` hand out one keep-alive agent, with one TLS context for
 * all its connections, for as long as the TLS material it is built from stays the same. (The agent
 * sets no bound on sockets: watches hold theirs for minutes, and a bound would queue requests
 * behind them. So a burst of N concurrent requests still opens up to N connections once, each
 * resuming the agent's cached TLS session; later requests reuse them.) When that changes (a rotated client certificate, a
 * new CA), the next request gets a new agent; the old one stops keeping connections (requests in
 * flight on it finish, then their sockets close) and its idle sockets close at once. Clusters
 * reached through a proxy keep client-node's own agents.
 */
import type http from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import { TlsContexts, sameOptions } from '../store/tls-context.ts';

/** The options client-node builds an agent from (`applyToHTTPSOptions`, `applySecurityAuthentication`). */
type AgentOptions = Record<string, unknown>;

interface Inner {
  createAgent(cluster: { proxyUrl?: string } | null | undefined, options: AgentOptions): http.Agent;
}

/** A shared agent and the options it was built from. */
interface Pooled {
  options: AgentOptions;
  agent: http.Agent;
}

/** Stops `agent` keeping connections: idle ones close now, busy ones when their request ends. */
function retire(agent: http.Agent): void {
  // Node's agent closes a socket freed by a request instead of keeping it when keepAlive is off.
  (agent as http.Agent & { keepAlive: boolean }).keepAlive = false;
  for (const sockets of Object.values(agent.freeSockets)) for (const s of sockets ?? []) s.destroy();
}

/**
 * Makes `kc` reuse connections (module doc). Returns `kc`.
 * @throws Error when this client-node has no `createAgent` to wrap (a version this was not
 *   written for: check the upstream issue before removing the wrapper).
 */
export function reuseConnections(kc: KubeConfig): KubeConfig {
  const inner = kc as unknown as Inner;
  if (typeof inner.createAgent !== 'function') {
    throw new Error('@kubernetes/client-node: KubeConfig.createAgent not found; cannot pool connections');
  }
  const make = inner.createAgent.bind(kc);
  const contexts = new TlsContexts();
  let pooled: Pooled | undefined;
  inner.createAgent = (cluster, options) => {
    if (cluster?.proxyUrl) return make(cluster, options);
    if (pooled && sameOptions(pooled.options, options)) return pooled.agent;
    if (pooled) retire(pooled.agent);
    pooled = {
      options: { ...options },
      // One TLS context for every connection of the agent: Node otherwise builds one per
      // connection from the PEMs, the larger part of a new connection's CPU here.
      agent: make(cluster, { ...options, keepAlive: true, secureContext: contexts.for(options) }),
    };
    return pooled.agent;
  };
  return kc;
}
