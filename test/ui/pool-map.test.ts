/**
 * The live pool map in a real browser: Debian's Chromium driven by playwright-core against a real
 * agent (in this process, memory store) on 127.0.0.1:0. Checks the counts the page shows against
 * what was allocated, the owner shown on hover, the live update without a reload, and saves a
 * screenshot to test-results/pool-map.png.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ensurePackages } from '../../scripts/lib/system.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';

const CHROMIUM = '/usr/bin/chromium';
const root = new URL('../..', import.meta.url).pathname;
const SCREENSHOT = join(root, 'test-results', 'pool-map.png');
const V = 'ipkeeper.io/v1alpha1';

let missing: string | undefined;
try {
  ensurePackages(['chromium']);
} catch (e) {
  missing = e instanceof Error ? e.message : String(e);
}

const dir = mkdtempSync(join(tmpdir(), 'ipk-ui-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

describe('pool map page in Chromium', { skip: missing }, () => {
  let agent: Agent;
  let context: BrowserContext;
  let page: Page;
  const socket = join(dir, 'agent.sock');

  const add = (containerId: string, pod: string, pool = 'p') =>
    call<{ ips: { address: string }[] }>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName: 'eth0',
      network: 'macvlan-ens192',
      cniVersion: '1.1.0',
      args: { K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: pod, K8S_POD_UID: `uid-${pod}` },
      ipam: { type: 'ipkeeper', pools: { ipv4: [pool] } },
    });
  const count = (pool: string, k: string) =>
    page.locator(`#pools-body tr[data-pool="${pool}"] td[data-count="${k}"]`).textContent();

  before(async () => {
    agent = await startAgent({
      store: new MemoryStore(),
      socket,
      node: 'worker-1',
      listen: '127.0.0.1:0',
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: V,
          kind: 'IPPool',
          metadata: { name: 'p' },
          spec: { subnet: '10.6.168.0/27', gateway: '10.6.168.1', excludeIPs: ['10.6.168.30'], vlan: 168 },
        },
        { apiVersion: V, kind: 'IPPool', metadata: { name: 'rack-16' }, spec: { subnet: '10.8.0.0/16' } },
        {
          apiVersion: V,
          kind: 'ReservedIP',
          metadata: { name: 'lb-vips' },
          spec: { ips: ['10.6.168.10-10.6.168.12'] },
        },
      ],
    });
    for (let i = 0; i < 3; i++) await add(`c${i}`, `web-${i}`);
    await add('c-rack', 'db-0', 'rack-16');
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1400, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });
  after(async () => {
    await context?.close();
    await agent?.close();
  });

  it('listens on the real port when asked for port 0', () => {
    assert.match(agent.httpAddress ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(agent.httpAddress!).port, '0');
  });

  it('shows the pool counts the agent holds', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${agent.httpAddress}/`);
    await page.locator('#live.on').waitFor();
    await page.locator('#pools-body tr[data-pool="p"]').waitFor();
    // /27: 30 usable − gateway − 1 excluded = 28 allocatable; 3 reserved; 3 used.
    assert.equal(await count('p', 'used'), '3');
    assert.equal(await count('p', 'reserved'), '3');
    assert.equal(await count('p', 'free'), '22');
    assert.equal(await count('p', 'total'), '28');
    assert.equal(await count('rack-16', 'total'), '65,534');
    assert.equal(await page.locator('[data-grid="p"] .c').count(), 30);
    assert.equal(await page.locator('[data-grid="p"] .c[data-state="used"]').count(), 3);
    assert.equal(await page.locator('[data-grid="p"] .c[data-state="reserved"]').count(), 3);
    assert.equal(await page.locator('[data-grid="p"] .c[data-state="excluded"]').count(), 2);
    assert.deepEqual(errors, [], 'no script or CSP errors');
  });

  it('shows a large pool as a window of 1,024 addresses and an overview', async () => {
    assert.equal(await page.locator('[data-grid="rack-16"] .c').count(), 1024);
    assert.match(
      (await page.locator('[data-note="rack-16"]').textContent()) ?? '',
      /showing 1,024 of 65,534 addresses/,
    );
    assert.equal(await page.locator('[data-blocks="rack-16"] b').count(), 128);
  });

  it('shows the owner of an address on hover', async () => {
    await page.locator('[data-grid="p"] .c[data-ip="10.6.168.3"]').hover();
    const tip = page.locator('#tip');
    await tip.waitFor({ state: 'visible' });
    const text = (await tip.textContent()) ?? '';
    assert.match(text, /10\.6\.168\.3/);
    assert.match(text, /Pod shop\/web-1/);
    assert.equal(await tip.locator('[data-tip="interface"]').textContent(), 'eth0');
    assert.equal(await tip.locator('[data-tip="node"]').textContent(), 'worker-1');
    assert.equal(await tip.locator('[data-tip="container"]').textContent(), 'c1');
    await page.locator('[data-grid="p"] .c[data-ip="10.6.168.11"]').hover();
    assert.match(
      (await tip.locator('[data-tip="why"]').textContent()) ?? '',
      /reserved by ReservedIP "lb-vips"/,
    );
  });

  it('updates live, without a reload, when addresses are allocated and a request fails', async () => {
    // The test's tsconfig has no DOM types: page code is typed through globalThis.
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
    await add('c3', 'web-3');
    await add('c4', 'web-4');
    await add('c5', 'web-5', 'no-such-pool').catch(() => undefined);
    // A locator wait, not waitForFunction: the page's CSP forbids evaluating strings in it.
    await page.locator('#pools-body tr[data-pool="p"] td[data-count="used"][data-value="5"]').waitFor();
    assert.equal(await count('p', 'free'), '20');
    assert.equal(
      await page.locator('[data-grid="p"] .c[data-ip="10.6.168.6"]').getAttribute('data-state'),
      'used',
    );
    await page.locator('#events li[data-kind="error"]').waitFor();
    const events = (await page.locator('#events').textContent()) ?? '';
    assert.match(events, /allocated 10\.6\.168\.6 \(pool p\) to pod shop\/web-4/);
    assert.match(events, /POOL_NOT_FOUND/);
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { marker: number }).marker),
      42,
      'the page was not reloaded',
    );

    // Leave the pointer on a held address for the screenshot.
    await page.locator('[data-grid="p"] .c[data-ip="10.6.168.5"]').hover();
    await page.locator('#tip').waitFor({ state: 'visible' });
    mkdirSync(join(root, 'test-results'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });
});
