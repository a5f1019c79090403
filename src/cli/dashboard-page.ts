// The dashboard page served at /dashboard: one HTML document with its script inline, so nothing
// is built or fetched from elsewhere. It polls /dashboard/api/cluster once a second (and
// /dashboard/api/capacity every two seconds for the Capacity panel) and draws
// with plain DOM and <canvas>; the key browser and watch tail speak the etcd JSON gateway
// (/v3/kv/range, /v3/lease/timetolive, /v3/watch) of the member that served the page. Write
// actions stay disabled until "allow write actions" is ticked, and each asks for confirmation.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Concord dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; background: #f5f6f8; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 16px; display: flex; gap: 24px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; padding: 12px; }
  section { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: 15px; margin: 4px 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
  .leader { color: #0a7d32; font-weight: 600; }
  .down { color: #b3261e; }
  .bar { height: 14px; background: #e5e7eb; border-radius: 3px; overflow: hidden; }
  .bar > div { height: 100%; background: #3b82f6; }
  .alarm { color: #b3261e; font-weight: 600; }
  canvas { width: 100%; height: 140px; }
  input[type=text] { width: 60%; }
  pre { background: #f3f4f6; padding: 6px; white-space: pre-wrap; word-break: break-all; max-height: 160px; overflow: auto; }
  #watch-events { max-height: 220px; overflow: auto; font-family: monospace; font-size: 12px; }
  .muted { color: #6b7280; }
  #capacity-panel table { font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>Concord</h1>
  <span>leader: <b id="leader">?</b></span>
  <span>term <b id="term">?</b></span>
  <span>revision <b id="revision">?</b></span>
  <span class="muted">served by <span id="served-by">?</span>, updated <span id="updated">never</span></span>
  <span style="margin-left:auto" id="auth-box"><input id="auth-user" placeholder="user" size="8"> <input id="auth-password" type="password" placeholder="password" size="8"> <button id="auth-signin">sign in</button> <span id="auth-who" class="muted">not signed in</span></span>
  <label><input type="checkbox" id="write-mode"> allow write actions</label>
</header>
<main>
  <section>
    <h2>Members</h2>
    <table><thead><tr><th>name</th><th>id</th><th>role</th><th>applied</th><th>DB size</th><th>client URL</th></tr></thead>
    <tbody id="members"></tbody></table>
    <p>Move leader to <select id="move-target"></select> <button id="move-leader" disabled>move</button></p>
  </section>
  <section>
    <h2>Throughput (ops/s on the leader)</h2>
    <canvas id="chart-throughput" width="600" height="140"></canvas>
    <div class="muted" id="throughput-now"></div>
  </section>
  <section>
    <h2>Latency (ms, averages per second)</h2>
    <canvas id="chart-latency" width="600" height="140"></canvas>
    <table><thead><tr><th>member</th><th>WAL fsync</th><th>apply+commit</th><th>peer round trips</th></tr></thead>
    <tbody id="latency"></tbody></table>
  </section>
  <section>
    <h2>Space and alarms</h2>
    <div id="space"></div>
    <div id="alarms"></div>
  </section>
  <section id="capacity-panel">
    <h2>Capacity (headroom on the member serving this page)</h2>
    <div class="muted" id="capacity-measured">measuring</div>
    <table><thead><tr><th>resource</th><th>used</th><th>limit</th><th>used %</th><th>headroom</th><th>growth</th><th>full in</th></tr></thead>
    <tbody id="capacity"></tbody></table>
    <details><summary>arithmetic</summary><pre id="capacity-arithmetic"></pre></details>
  </section>
  <section>
    <h2>Keys</h2>
    <input type="text" id="prefix" placeholder="key prefix"> <button id="search">search</button>
    <table><tbody id="keys"></tbody></table>
    <div id="key-detail"></div>
  </section>
  <section>
    <h2>Watch</h2>
    <input type="text" id="watch-prefix" placeholder="key prefix ('' = all keys)"> <button id="watch-start">watch</button>
    <button id="watch-stop" disabled>stop</button>
    <div id="watch-events"></div>
  </section>
</main>
<script>
'use strict';
const enc = new TextEncoder();
const dec = new TextDecoder();
const b64 = (text) => { let s = ''; for (const b of enc.encode(text)) s += String.fromCharCode(b); return btoa(s); };
const unb64 = (data) => { if (!data) return ''; const s = atob(data); const bytes = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i); return dec.decode(bytes); };
const rangeEnd = (prefix) => {
  const bytes = enc.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) { if (bytes[i] < 0xff) { const end = bytes.slice(0, i + 1); end[i]++; let s = ''; for (const b of end) s += String.fromCharCode(b); return btoa(s); } }
  return b64('\\0');
};
const el = (id) => document.getElementById(id);
const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; };
const bytes = (n) => n >= 1 << 30 ? (n / (1 << 30)).toFixed(2) + ' GiB' : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MiB' : (n / 1024).toFixed(0) + ' KiB';
// With auth on, the gateway calls carry the token of the user signed in here (etcd's
// Authorization header); the page keeps it in memory only.
let authToken;
const gatewayHeaders = () => (authToken ? { 'content-type': 'application/json', authorization: authToken } : { 'content-type': 'application/json' });
async function gateway(path, body) {
  const answer = await fetch(path, { method: 'POST', headers: gatewayHeaders(), body: JSON.stringify(body) });
  const json = await answer.json();
  if (!answer.ok) throw new Error(json.message || json.error || ('HTTP ' + answer.status));
  return json;
}

// ---- live cluster view ----
const history = { throughput: [], fsync: [], commit: [], rtt: [] };
const HISTORY_POINTS = 120;
let previous;
let cluster;
function push(series, value) { series.push(value); if (series.length > HISTORY_POINTS) series.shift(); }
function avgMs(now, before) { const n = now.count - (before ? before.count : 0); return n > 0 ? 1000 * (now.sum - (before ? before.sum : 0)) / n : null; }
function rttOf(self) { let sum = 0, count = 0; for (const v of Object.values(self.timings.peerRtt)) { sum += v.sum; count += v.count; } return { sum, count }; }

function draw(canvas, lines) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const line of lines) for (const v of line.values) if (v !== null && v > max) max = v;
  ctx.fillStyle = '#6b7280'; ctx.font = '11px sans-serif'; ctx.fillText(max.toFixed(max < 10 ? 1 : 0), 2, 10);
  lines.forEach((line, index) => {
    ctx.strokeStyle = line.color; ctx.lineWidth = 1.5; ctx.beginPath();
    let started = false;
    line.values.forEach((v, i) => {
      if (v === null) return;
      const x = (i / (HISTORY_POINTS - 1)) * w, y = h - (v / max) * (h - 14);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
    ctx.fillStyle = line.color; ctx.fillText(line.label, 60 + index * 110, 10);
  });
}

function render(view) {
  cluster = view;
  const members = view.members;
  const leaderMember = members.find((m) => m.self && m.self.isLeader);
  el('leader').textContent = leaderMember ? leaderMember.name + ' (' + leaderMember.id + ')' : 'none';
  el('served-by').textContent = view.servedBy;
  el('updated').textContent = new Date(view.nowMs).toLocaleTimeString();
  const any = members.find((m) => m.self);
  el('term').textContent = any ? Math.max(...members.filter((m) => m.self).map((m) => m.self.term)) : '?';
  el('revision').textContent = leaderMember ? leaderMember.self.revision : any ? any.self.revision : '?';
  const rows = el('members'); rows.replaceChildren();
  const target = el('move-target'); const chosen = target.value; target.replaceChildren();
  for (const m of members) {
    const role = !m.reachable ? 'unreachable' : m.self.isLeader ? 'leader' : m.isLearner ? 'learner' : 'follower';
    const tr = document.createElement('tr');
    tr.className = 'member'; tr.dataset.name = m.name; tr.dataset.role = role;
    tr.append(text('td', m.name || '(unstarted)'), text('td', m.id), text('td', role, role === 'leader' ? 'leader' : role === 'unreachable' ? 'down' : ''),
      text('td', m.self ? m.self.appliedIndex : '-'), text('td', m.self ? bytes(m.self.dbSizeBytes) : '-'), text('td', (m.clientUrls || []).join(', ')));
    if (!m.reachable) tr.title = m.error;
    rows.append(tr);
    if (m.reachable && !m.self.isLeader && !m.isLearner) { const o = text('option', m.name); o.value = m.id; target.append(o); }
  }
  if (chosen) target.value = chosen;
  // Rates from the leader's counters between two polls.
  if (leaderMember) {
    const s = leaderMember.self;
    const before = previous && previous.memberId === s.memberId ? previous : undefined;
    if (before) {
      const seconds = Math.max(0.001, (s.nowMs - before.nowMs) / 1000);
      const ops = (s.counters.puts + s.counters.deletes + s.counters.txns + s.counters.ranges - before.counters.puts - before.counters.deletes - before.counters.txns - before.counters.ranges) / seconds;
      push(history.throughput, ops);
      push(history.fsync, avgMs(s.timings.walFsync, before.timings.walFsync));
      push(history.commit, avgMs(s.timings.backendCommit, before.timings.backendCommit));
      push(history.rtt, avgMs(rttOf(s), rttOf(before)));
      el('throughput-now').textContent = ops.toFixed(1) + ' ops/s now; puts ' + s.counters.puts + ', ranges ' + s.counters.ranges + ', txns ' + s.counters.txns;
    }
    previous = s;
  }
  draw(el('chart-throughput'), [{ label: 'ops/s', color: '#3b82f6', values: history.throughput }]);
  draw(el('chart-latency'), [
    { label: 'fsync', color: '#ef4444', values: history.fsync },
    { label: 'commit', color: '#f59e0b', values: history.commit },
    { label: 'peer RTT', color: '#10b981', values: history.rtt },
  ]);
  const latency = el('latency'); latency.replaceChildren();
  for (const m of members.filter((x) => x.self)) {
    const t = m.self.timings;
    const rtts = Object.entries(t.peerRtt).map(([peer, v]) => peer + ' ' + (v.count ? (1000 * v.sum / v.count).toFixed(2) : '-')).join(', ');
    const tr = document.createElement('tr');
    tr.append(text('td', m.name), text('td', t.walFsync.count ? (1000 * t.walFsync.sum / t.walFsync.count).toFixed(2) + ' ms' : '-'),
      text('td', t.backendCommit.count ? (1000 * t.backendCommit.sum / t.backendCommit.count).toFixed(2) + ' ms' : '-'), text('td', rtts || '-'));
    latency.append(tr);
  }
  // Space against the quota, and alarms (cluster-wide: any reachable member knows them all).
  const space = el('space'); space.replaceChildren();
  for (const m of members.filter((x) => x.self)) {
    const share = Math.min(1, m.self.dbSizeBytes / m.self.quotaBytes);
    const line = document.createElement('div');
    const bar = document.createElement('div'); bar.className = 'bar'; const fill = document.createElement('div'); fill.style.width = (100 * share).toFixed(1) + '%'; bar.append(fill);
    line.append(text('span', m.name + ': ' + bytes(m.self.dbSizeBytes) + ' of ' + bytes(m.self.quotaBytes) + ' (' + (100 * share).toFixed(1) + '%), in use ' + bytes(m.self.dbSizeInUseBytes) + ', ' + m.self.keys + ' keys'), bar);
    space.append(line);
  }
  const alarms = el('alarms'); alarms.replaceChildren();
  const raised = any ? any.self.alarms : [];
  if (raised.length === 0) alarms.append(text('p', 'no alarms', 'muted'));
  for (const a of raised) {
    const p = text('p', 'alarm ' + a.alarm + ' on member ' + a.memberId + ' ', 'alarm');
    const button = text('button', 'disarm'); button.className = 'write-action'; button.disabled = !el('write-mode').checked;
    button.onclick = () => disarm(a);
    p.append(button); alarms.append(p);
  }
  syncWriteMode();
}

async function poll() {
  try {
    const answer = await fetch('/dashboard/api/cluster', { cache: 'no-store' });
    if (answer.ok) render(await answer.json());
  } catch (error) {
    el('updated').textContent = 'failed: ' + error.message;
  }
}

// ---- capacity: the member's own headroom (read-only), polled every 2 s ----
const fmtNum = (n) => n.toLocaleString('en-US', { maximumFractionDigits: Math.abs(n) >= 100 || Number.isInteger(n) ? 0 : Math.abs(n) >= 1 ? 2 : 3 });
const signedBytes = (n) => (n < 0 ? '-' : '') + bytes(Math.abs(n));
function amount(row, v) {
  if (v === null || v === undefined) return '-';
  if (row.unit === 'bytes') return signedBytes(v);
  if (row.unit === 'cores') return fmtNum(v) + (v === 1 ? ' core' : ' cores');
  if (row.unit === 'fsyncs/s' || row.unit === 'writes/s') return fmtNum(v) + '/s';
  return fmtNum(v);
}
function span(seconds) {
  if (seconds < 120) return seconds.toFixed(0) + ' s';
  if (seconds < 7200) return (seconds / 60).toFixed(1) + ' min';
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + ' h';
  return (seconds / 86400).toFixed(1) + ' days';
}
function renderCapacity(view) {
  const r = view.report;
  if (!r) { el('capacity-measured').textContent = 'measuring: the rates need two samples a second apart'; return; }
  const m = r.measured;
  el('capacity-measured').textContent = (m
    ? 'one Raft group sustains ' + fmtNum(m.writesPerSec) + ' writes/s (measured ' + m.measuredAt + ', put of ' + m.valueBytes + ' B values, ' + m.clients + ' clients)'
    : view.measuredNote) + '; rates over the last ' + fmtNum(r.intervalSec) + ' s on ' + view.member;
  const rows = el('capacity'); rows.replaceChildren();
  for (const row of r.resources) {
    const tr = document.createElement('tr');
    tr.className = 'capacity-row'; tr.dataset.resource = row.resource;
    tr.dataset.share = row.usedShare === null ? '' : String(row.usedShare);
    const share = row.usedShare === null ? '-' : (100 * row.usedShare).toFixed(1) + '%';
    const growth = row.growthPerSec === null ? '-' : (row.unit === 'bytes' ? signedBytes(row.growthPerSec) : fmtNum(row.growthPerSec)) + '/s';
    tr.append(text('td', row.resource), text('td', amount(row, row.used)), text('td', amount(row, row.limit)),
      text('td', share, row.usedShare !== null && row.usedShare > 0.8 ? 'alarm' : ''), text('td', amount(row, row.headroom)),
      text('td', growth), text('td', row.timeToFullSec === null ? '-' : span(row.timeToFullSec)));
    rows.append(tr);
  }
  el('capacity-arithmetic').textContent = r.arithmetic.concat(r.notes.map((n) => 'note: ' + n)).join('\\n');
}
async function pollCapacity() {
  try {
    const answer = await fetch('/dashboard/api/capacity', { cache: 'no-store' });
    if (answer.ok) renderCapacity(await answer.json());
  } catch (error) {
    el('capacity-measured').textContent = 'failed: ' + error.message;
  }
}

// ---- write actions: off unless ticked, confirmed one by one ----
function syncWriteMode() {
  const on = el('write-mode').checked;
  el('move-leader').disabled = !on || el('move-target').options.length === 0;
  for (const b of document.querySelectorAll('.write-action')) b.disabled = !on;
}
el('write-mode').onchange = syncWriteMode;
el('move-leader').onclick = async () => {
  const target = el('move-target');
  if (!target.value || !confirm('Move the leadership to ' + target.selectedOptions[0].textContent + '?')) return;
  const leaderMember = cluster && cluster.members.find((m) => m.self && m.self.isLeader);
  if (!leaderMember) return alert('no leader to move from');
  try {
    // MoveLeader must reach the leader: the gateway call goes to its client URL.
    await fetch(leaderMember.clientUrls[0] + '/v3/maintenance/transfer-leadership', { method: 'POST', headers: gatewayHeaders(), body: JSON.stringify({ targetID: BigInt('0x' + target.value).toString() }) });
  } catch (error) { alert('move leader failed: ' + error.message); }
};
async function disarm(alarm) {
  if (!confirm('Disarm the ' + alarm.alarm + ' alarm of member ' + alarm.memberId + '?')) return;
  try {
    await gateway('/v3/maintenance/alarm', { action: 'DEACTIVATE', memberID: BigInt('0x' + alarm.memberId).toString(), alarm: alarm.alarm });
  } catch (error) { alert('disarm failed: ' + error.message); }
}

// ---- sign in (auth) ----
el('auth-signin').onclick = async () => {
  const name = el('auth-user').value;
  try {
    authToken = undefined;
    const answer = await gateway('/v3/auth/authenticate', { name, password: el('auth-password').value });
    authToken = answer.token;
    el('auth-who').textContent = 'signed in as ' + name;
  } catch (error) { el('auth-who').textContent = 'sign-in failed: ' + error.message; }
  el('auth-password').value = '';
};

// ---- key browser ----
el('search').onclick = async () => {
  const prefix = el('prefix').value;
  const keys = el('keys'); keys.replaceChildren();
  try {
    const answer = await gateway('/v3/kv/range', { key: b64(prefix || '\\0'), range_end: prefix ? rangeEnd(prefix) : b64('\\0'), limit: 100, keys_only: true });
    for (const kv of answer.kvs || []) {
      const key = unb64(kv.key);
      const tr = document.createElement('tr'); tr.className = 'key';
      const link = text('a', key); link.href = '#'; link.onclick = (event) => { event.preventDefault(); showKey(key); };
      const td = document.createElement('td'); td.append(link); tr.append(td); keys.append(tr);
    }
    if (!answer.kvs || answer.kvs.length === 0) keys.append(text('tr', 'no keys', 'muted'));
  } catch (error) { keys.append(text('tr', error.message, 'down')); }
};
async function showKey(key) {
  const detail = el('key-detail'); detail.replaceChildren(text('p', 'loading ' + key));
  try {
    const answer = await gateway('/v3/kv/range', { key: b64(key) });
    const kv = (answer.kvs || [])[0];
    if (!kv) { detail.replaceChildren(text('p', key + ': not found')); return; }
    const parts = [text('h3', key), text('pre', unb64(kv.value)),
      text('p', 'revision ' + kv.mod_revision + ', created at ' + kv.create_revision + ', version ' + (kv.version || 1))];
    if (kv.lease && kv.lease !== '0') {
      const ttl = await gateway('/v3/lease/timetolive', { ID: kv.lease });
      parts.push(text('p', 'lease ' + BigInt(kv.lease).toString(16) + ': TTL ' + ttl.TTL + ' s of ' + ttl.grantedTTL + ' s'));
    } else parts.push(text('p', 'no lease'));
    // Earlier values, newest first, back to the key's creation or the compaction point.
    const rows = document.createElement('table'); rows.id = 'key-history';
    let at = Number(kv.mod_revision) - 1;
    const created = Number(kv.create_revision);
    for (let i = 0; i < 10 && at >= created; i++) {
      let old;
      try { old = ((await gateway('/v3/kv/range', { key: b64(key), revision: String(at) })).kvs || [])[0]; }
      catch (error) { rows.append(text('tr', 'older revisions compacted (' + error.message + ')', 'muted')); break; }
      if (!old) break;
      const tr = document.createElement('tr'); tr.append(text('td', 'rev ' + old.mod_revision), text('td', unb64(old.value))); rows.append(tr);
      at = Number(old.mod_revision) - 1;
    }
    parts.push(text('h4', 'history'), rows);
    detail.replaceChildren(...parts);
  } catch (error) { detail.replaceChildren(text('p', error.message, 'down')); }
}

// ---- watch tail ----
let watching;
el('watch-start').onclick = async () => {
  if (watching) watching.abort();
  watching = new AbortController();
  const prefix = el('watch-prefix').value;
  const events = el('watch-events');
  el('watch-stop').disabled = false;
  const request = { create_request: { key: b64(prefix || '\\0'), range_end: prefix ? rangeEnd(prefix) : b64('\\0') } };
  try {
    const answer = await fetch('/v3/watch', { method: 'POST', headers: gatewayHeaders(), body: JSON.stringify(request), signal: watching.signal });
    const reader = answer.body.getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += dec.decode(value, { stream: true });
      let newline;
      while ((newline = buffered.indexOf('\\n')) >= 0) {
        const line = buffered.slice(0, newline).trim(); buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const message = JSON.parse(line).result || {};
        for (const event of message.events || []) {
          const row = text('div', (event.type || 'PUT') + ' ' + unb64(event.kv.key) + ' = ' + unb64(event.kv.value) + ' @' + event.kv.mod_revision);
          row.className = 'watch-event';
          events.prepend(row);
          while (events.children.length > 200) events.lastChild.remove();
        }
      }
    }
  } catch (error) {
    if (error.name !== 'AbortError') events.prepend(text('div', 'watch ended: ' + error.message, 'down'));
  }
};
el('watch-stop').onclick = () => { if (watching) watching.abort(); watching = undefined; el('watch-stop').disabled = true; };

poll();
setInterval(poll, 1000);
pollCapacity();
setInterval(pollCapacity, 2000);
</script>
</body>
</html>
`;
