/**
 * @module agent/ui/page
 * The live pool map: one self-contained HTML page (inline CSS and script, no CDN, no build step),
 * served at `GET /`. It draws `GET /v1/map` and re-fetches it whenever `GET /v1/events` says
 * something changed (polling every `POLL_MS` only while that stream is down).
 *
 * The legend and the colours come from the map's `states` list, so a new address state needs no
 * change here. Everything shown that comes from the store (pod names, pool names) is inserted as
 * text or escaped; the script is pinned by its hash in the Content-Security-Policy.
 *
 * The script is plain ES2020 in a string: no template literals inside it (this file holds it in
 * one), and no framework — a few thousand cells are drawn as one `innerHTML` per pool.
 */
import { createHash } from 'node:crypto';

const STYLE = String.raw`
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --panel:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; gap:16px; padding:10px 20px; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:18px; margin:0; }
header .meta { color:var(--muted); }
#live { margin-left:auto; font-weight:600; }
#live.on { color:#1a7f37; } #live.off { color:#b35900; }
#layout { display:grid; grid-template-columns:minmax(0,1fr) 340px; gap:20px; padding:16px 20px; }
h2 { font-size:15px; margin:0 0 8px; }
h3 { font-size:14px; margin:0; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.bar { display:flex; width:180px; height:12px; border-radius:3px; overflow:hidden; border:1px solid var(--line); }
.bar span { display:block; height:100%; }
#legend { display:flex; flex-wrap:wrap; gap:6px 16px; margin:14px 0; }
#legend .item { display:flex; align-items:center; gap:6px; }
#legend .item.future { opacity:.45; }
.sw { display:inline-block; width:14px; height:14px; border-radius:3px; border:1px solid rgba(0,0,0,.15); }
.pool { border:1px solid var(--line); border-radius:6px; padding:10px 12px; margin:0 0 14px; }
.pool .sub { color:var(--muted); font-weight:400; margin-left:8px; }
.note { color:var(--muted); margin:4px 0 8px; font-size:12px; }
.grid { display:flex; flex-wrap:wrap; gap:2px; }
.c { display:block; width:26px; height:20px; border-radius:3px; font:9px/20px ui-monospace, "DejaVu Sans Mono", monospace; text-align:center; font-style:normal; cursor:default; overflow:hidden; }
.c:hover, .c.hl { outline:2px solid #000; outline-offset:0; }
.c.flash { animation:flash 1.2s ease-out; }
@keyframes flash { from { box-shadow:0 0 0 3px #ffd33d; } to { box-shadow:0 0 0 0 transparent; } }
.blocks { display:flex; height:22px; margin:0 0 8px; border:1px solid var(--line); border-radius:3px; overflow:hidden; cursor:pointer; }
.blocks b { flex:1; display:block; }
.blocks b.cur { box-shadow:inset 0 -5px 0 #1f2328; }
#events { list-style:none; margin:0; padding:0; font-size:12px; }
#events li { padding:5px 0; border-bottom:1px solid var(--line); }
#events time { color:var(--muted); font-variant-numeric:tabular-nums; margin-right:6px; }
#events .k { display:inline-block; min-width:64px; font-weight:600; }
#events .k-error { color:#d93025; } #events .k-allocate { color:#2d6cdf; } #events .k-release, #events .k-operator-release, #events .k-reclaim, #events .k-gc { color:#8a6d00; }
#totals { display:flex; gap:18px; margin:0 0 12px; color:var(--muted); }
#totals b { color:var(--fg); font-variant-numeric:tabular-nums; }
#tip { position:fixed; z-index:10; max-width:420px; background:#1f2328; color:#fff; padding:8px 10px; border-radius:6px; font-size:12px; line-height:1.5; pointer-events:none; box-shadow:0 4px 14px rgba(0,0,0,.25); }
#tip .ip { font:600 13px ui-monospace, "DejaVu Sans Mono", monospace; }
#tip .st { display:inline-block; padding:0 6px; border-radius:8px; margin-left:6px; font-size:11px; }
#tip .dim { color:#b8c0c8; }
#error { color:#d93025; margin:0 0 10px; }
.empty { color:var(--muted); }
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var POLL_MS = 1000;
  var at = {};            // pool -> window start (index among the pool's addresses)
  var data = null;        // the last /v1/map answer
  var prev = {};          // pool -> ip -> state, to flash what changed
  var tipIp = null;       // the address under the pointer
  var inflight = false, again = false, pollTimer = null, styled = false;

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function fmt(n) { try { return BigInt(n).toLocaleString('en-US'); } catch (e) { return String(n); } }
  function pct(part, whole) {
    var w = Number(whole);
    return w > 0 ? Math.max(0, Math.min(100, (Number(part) / w) * 100)) : 0;
  }
  function label(ip) {
    if (ip.indexOf(':') >= 0) { var g = ip.split(':'); return g[g.length - 1] || '0'; }
    var o = ip.split('.'); return o[o.length - 1];
  }
  function dark(hex) {
    var v = parseInt(hex.slice(1), 16);
    var r = (v >> 16) & 255, g = (v >> 8) & 255, b = v & 255;
    return (0.299 * r + 0.587 * g + 0.114 * b) < 150;
  }
  function color(id) {
    for (var i = 0; i < data.states.length; i++) if (data.states[i].id === id) return data.states[i].color;
    return '#cccccc';
  }

  // Colours come from the map's state list: a new state needs no change in this script.
  function style(states) {
    if (styled) return;
    styled = true;
    var css = '';
    states.forEach(function (s) {
      css += '.s-' + s.id + '{background:' + s.color + ';color:' + (dark(s.color) ? '#fff' : '#1f2328') + '}\n';
    });
    var el = document.createElement('style');
    el.textContent = css;
    document.head.appendChild(el);
  }

  function legend(states) {
    $('legend').innerHTML = states.map(function (s) {
      return '<span class="item' + (s.produced ? '' : ' future') + '" title="' + esc(s.description) + '">' +
        '<span class="sw s-' + esc(s.id) + '"></span>' + esc(s.label) + (s.produced ? '' : ' (not yet)') + '</span>';
    }).join('');
  }

  function poolsTable(pools) {
    if (pools.length === 0) {
      $('pools-body').innerHTML = '<tr><td colspan="8" class="empty">No pools yet: ipkeeper apply -f pool.yaml</td></tr>';
      return;
    }
    $('pools-body').innerHTML = pools.map(function (p) {
      var c = p.counts;
      var bar = '<div class="bar" title="used ' + fmt(c.used) + ', reserved ' + fmt(c.reserved) + ', free ' + fmt(c.free) + ' of ' + fmt(c.total) + '">' +
        '<span class="s-used" style="width:' + pct(c.used, c.total) + '%"></span>' +
        '<span class="s-reserved" style="width:' + pct(c.reserved, c.total) + '%"></span>' +
        '<span class="s-free" style="flex:1"></span></div>';
      function num(k) { return '<td class="num" data-count="' + k + '" data-value="' + esc(c[k]) + '">' + fmt(c[k]) + '</td>'; }
      return '<tr data-pool="' + esc(p.name) + '"><td><a href="#pool-' + esc(p.name) + '">' + esc(p.name) + '</a>' +
        (p.disabled ? ' <small>(disabled)</small>' : '') + (p.default ? ' <small>(default)</small>' : '') + '</td>' +
        '<td>' + esc(p.network) + '</td><td>' + esc(p.subnet) + '</td><td>' + bar + '</td>' +
        num('used') + num('reserved') + num('free') + num('total') + '</tr>';
    }).join('');
  }

  function blocksHtml(p) {
    if (!p.blocks) return '';
    var start = BigInt(p.window.at), end = start + BigInt(p.window.shown);
    return '<div class="blocks" data-blocks="' + esc(p.name) + '">' + p.blocks.map(function (b) {
      var size = Number(b.size);
      var u = pct(b.used, size), r = u + pct(b.reserved, size), x = r + pct(b.excluded, size);
      var bg = 'linear-gradient(to top,' + color('used') + ' 0 ' + u + '%,' + color('reserved') + ' ' + u + '% ' + r + '%,' +
        color('excluded') + ' ' + r + '% ' + x + '%,' + color('free') + ' ' + x + '% 100%)';
      var bs = BigInt(b.at), be = bs + BigInt(b.size);
      var cur = bs < end && be > start;
      return '<b data-at="' + esc(b.at) + '"' + (cur ? ' class="cur"' : '') + ' style="background:' + bg + '" title="' +
        esc(b.first + ' - ' + b.last + ': ' + fmt(b.used) + ' used, ' + fmt(b.reserved) + ' reserved of ' + fmt(b.size) + ' (click to show)') + '"></b>';
    }).join('') + '</div>';
  }

  function poolHtml(p) {
    var w = p.window, before = prev[p.name] || {}, next = {};
    var first = p.cells.length ? p.cells[0].ip : '', last = p.cells.length ? p.cells[p.cells.length - 1].ip : '';
    var note = w.truncated
      ? 'showing ' + fmt(w.shown) + ' of ' + fmt(w.size) + ' addresses (' + esc(first) + ' - ' + esc(last) + '); the strip above is the whole pool in blocks, click one to show it'
      : 'showing ' + fmt(w.shown) + ' of ' + fmt(w.size) + ' addresses';
    var cells = p.cells.map(function (c, i) {
      next[c.ip] = c.state;
      var changed = before[c.ip] !== undefined && before[c.ip] !== c.state;
      return '<i class="c s-' + esc(c.state) + (changed ? ' flash' : '') + (c.ip === tipIp ? ' hl' : '') + '" data-i="' + i + '" data-ip="' + esc(c.ip) +
        '" data-state="' + esc(c.state) + '">' + esc(label(c.ip)) + '</i>';
    }).join('');
    prev[p.name] = next;
    var sub = [p.subnet, p.gateway ? 'gateway ' + p.gateway : null, p.vlan !== undefined ? 'vlan ' + p.vlan : null,
      'network ' + p.network, p.ranges.length ? 'ranges ' + p.ranges.slice(0, 4).join(', ') + (p.ranges.length > 4 ? ', ...' : '') : null]
      .filter(function (x) { return x; }).join(' · ');
    return '<article class="pool" id="pool-' + esc(p.name) + '" data-map="' + esc(p.name) + '"><h3>' + esc(p.name) +
      '<span class="sub">' + esc(sub) + '</span></h3><p class="note" data-note="' + esc(p.name) + '">' + note + '</p>' +
      blocksHtml(p) + '<div class="grid" data-grid="' + esc(p.name) + '">' + cells + '</div></article>';
  }

  function eventsHtml(events) {
    if (events.length === 0) return '<li class="empty">Nothing yet: allocations, releases and errors show here.</li>';
    return events.map(function (e) {
      var t = new Date(e.at);
      var msg = e.message.length > 180 ? e.message.slice(0, 177) + '...' : e.message;
      return '<li data-kind="' + esc(e.kind) + '" title="' + esc(e.message) + '"><time datetime="' + esc(e.at) + '">' + esc(t.toLocaleTimeString('en-GB')) + '</time>' +
        '<span class="k k-' + esc(e.kind) + '">' + esc(e.kind) + '</span> ' + esc(msg) +
        (e.repeats ? ' <b>×' + esc(e.repeats) + '</b>' : '') + '</li>';
    }).join('');
  }

  function render(d) {
    data = d;
    style(d.states);
    legend(d.states);
    $('node').textContent = d.node;
    $('store').textContent = d.store;
    var t = d.totals;
    $('totals').innerHTML = '<span>pools <b data-total="pools">' + fmt(t.pools) + '</b></span><span>used <b data-total="used">' + fmt(t.used) +
      '</b></span><span>reserved <b data-total="reserved">' + fmt(t.reserved) + '</b></span><span>free <b data-total="free">' + fmt(t.free) +
      '</b></span><span>total <b data-total="total">' + fmt(t.total) + '</b></span>';
    poolsTable(d.pools);
    $('maps').innerHTML = d.pools.map(poolHtml).join('');
    $('events').innerHTML = eventsHtml(d.events);
    $('updated').textContent = 'updated ' + new Date(d.generatedAt).toLocaleTimeString('en-GB');
    if (tipIp) showTip(tipIp, null);
  }

  function query() {
    var parts = Object.keys(at).map(function (k) { return k + ':' + at[k]; });
    return parts.length ? '?at=' + encodeURIComponent(parts.join(',')) : '';
  }

  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch('/v1/map' + query(), { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('agent answered ' + r.status); return r.json(); })
      .then(function (d) { $('error').textContent = ''; render(d); })
      .catch(function (e) { $('error').textContent = 'cannot load the map: ' + e.message; })
      .then(function () { inflight = false; if (again) { again = false; refresh(); } });
  }

  function findCell(ip) {
    if (!data) return null;
    for (var i = 0; i < data.pools.length; i++) {
      var cs = data.pools[i].cells;
      for (var j = 0; j < cs.length; j++) if (cs[j].ip === ip) return { pool: data.pools[i], cell: cs[j] };
    }
    return null;
  }

  function tipHtml(found) {
    var c = found.cell, h = c.holder, rows = [];
    rows.push('<span class="ip">' + esc(c.ip) + '</span><span class="st s-' + esc(c.state) + '">' + esc(c.state) + '</span>' +
      ' <span class="dim">pool ' + esc(found.pool.name) + '</span>');
    if (h) {
      rows.push('<b data-tip="owner">' + esc(h.owner) + '</b>' + (h.uid ? ' <span class="dim">uid ' + esc(h.uid) + '</span>' : ''));
      if (h.containerId) rows.push('container <span data-tip="container">' + esc(h.containerId.slice(0, 12)) + '</span>');
      rows.push('interface <span data-tip="interface">' + esc(h.ifName || '-') + '</span> · node <span data-tip="node">' + esc(h.node || '-') + '</span>');
      rows.push('<span class="dim">network ' + esc(h.cniNetwork || '-') + ' · since ' + esc(new Date(h.createdAt).toLocaleString('en-GB')) + '</span>');
      if (h.pool !== found.pool.name) rows.push('claim names pool ' + esc(h.pool));
    }
    if (c.why) rows.push('<span data-tip="why">' + esc(c.why) + '</span>');
    if (c.state === 'free') rows.push('<span class="dim">free: can be handed out</span>');
    return rows.join('<br>');
  }

  function showTip(ip, ev) {
    var found = findCell(ip), tip = $('tip');
    if (!found) { hideTip(); return; }
    if (tipIp !== ip) mark(ip);
    tipIp = ip;
    tip.innerHTML = tipHtml(found);
    tip.hidden = false;
    if (ev) {
      var x = ev.clientX + 14, y = ev.clientY + 14, r = tip.getBoundingClientRect();
      if (x + r.width > window.innerWidth - 8) x = ev.clientX - r.width - 14;
      if (y + r.height > window.innerHeight - 8) y = ev.clientY - r.height - 14;
      tip.style.left = Math.max(4, x) + 'px';
      tip.style.top = Math.max(4, y) + 'px';
    }
  }
  function hideTip() { tipIp = null; mark(null); $('tip').hidden = true; }
  // Outlines the address under the pointer; kept across re-renders (the grid is redrawn on change).
  function mark(ip) {
    document.querySelectorAll('.c.hl').forEach(function (el) { el.classList.remove('hl'); });
    if (ip) document.querySelectorAll('.c[data-ip="' + ip + '"]').forEach(function (el) { el.classList.add('hl'); });
  }

  document.addEventListener('mouseover', function (ev) {
    var el = ev.target.closest && ev.target.closest('.c');
    if (el) showTip(el.getAttribute('data-ip'), ev); else if (tipIp) hideTip();
  });
  document.addEventListener('mousemove', function (ev) {
    var el = ev.target.closest && ev.target.closest('.c');
    if (el && tipIp) showTip(el.getAttribute('data-ip'), ev);
  });
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest && ev.target.closest('.blocks b');
    if (!b) return;
    at[b.parentNode.getAttribute('data-blocks')] = b.getAttribute('data-at');
    refresh();
  });

  function setLive(on) {
    var el = $('live');
    el.className = on ? 'on' : 'off';
    el.textContent = on ? '● live' : '○ reconnecting (polling)';
    if (on && pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (!on && !pollTimer) pollTimer = setInterval(refresh, POLL_MS);
  }

  if (window.EventSource) {
    var es = new EventSource('/v1/events');
    es.addEventListener('hello', function () { setLive(true); refresh(); });
    es.addEventListener('change', refresh);
    es.onerror = function () { setLive(false); };
  } else {
    setLive(false);
  }
  refresh();
})();
`;

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('base64');

/** Only the page's own script (by hash) runs; data comes from the same origin only. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(SCRIPT)}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ipkeeper — pool map</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>ipkeeper</h1>
  <span class="meta">pool map · node <b id="node">…</b> · store <span id="store">…</span></span>
  <span id="live" class="off">○ connecting</span>
  <span id="updated" class="meta"></span>
</header>
<div id="layout">
  <main>
    <p id="error" role="alert"></p>
    <div id="totals"></div>
    <h2>Pools</h2>
    <table id="pools">
      <thead><tr><th>Pool</th><th>Network</th><th>Subnet</th><th>Usage</th><th class="num">Used</th><th class="num">Reserved</th><th class="num">Free</th><th class="num">Total</th></tr></thead>
      <tbody id="pools-body"></tbody>
    </table>
    <div id="legend"></div>
    <div id="maps"></div>
  </main>
  <aside>
    <h2>Recent events</h2>
    <ol id="events"></ol>
  </aside>
</div>
<div id="tip" role="tooltip" hidden></div>
<script>${SCRIPT}</script>
</body>
</html>
`;
