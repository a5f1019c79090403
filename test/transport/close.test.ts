import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

// The child builds a busy transport set (mesh, traffic, a snapshot, a pending redial to a dead
// port, a delayed message, an in-flight stalled snapshot), closes everything, and must then exit
// by itself: any socket or timer left behind keeps it alive and the parent's deadline fails.
const transportModule = new URL('../../src/transport/peer-transport.js', import.meta.url).href;
const childScript = `
import { PeerTransport } from ${JSON.stringify(transportModule)};
import { createServer } from 'node:net';
const got = [];
const make = (id) => new PeerTransport({
  nodeId: id, clusterId: 'c', listenUrl: 'http://127.0.0.1:0', backoffMinMs: 10, backoffMaxMs: 50,
  onMessage: (m) => got.push(m),
  snapshotSource: () => (async function* () { yield new Uint8Array(1 << 20); await new Promise(() => {}); })(),
});
const nodes = [make(1), make(2), make(3)];
for (const n of nodes) await n.listen();
for (const a of nodes) for (const b of nodes) if (a !== b) a.addPeer(b.nodeId, b.url);
const probe = createServer(); await new Promise((r) => probe.listen(0, '127.0.0.1', r));
const dead = probe.address().port; await new Promise((r) => probe.close(r));
nodes[0].addPeer(9, 'http://127.0.0.1:' + dead);
const stranger = new PeerTransport({ nodeId: 8, clusterId: 'other', listenUrl: 'http://127.0.0.1:0', onMessage() {} });
await stranger.listen();
nodes[0].addPeer(8, stranger.url); // rejected handshakes linger while they flush their reason
const msg = (from, to, extra = {}) => ({ type: 3, from, to, term: 1, logTerm: 1, index: 1, entries: [], commit: 0, reject: false, rejectHint: 0, context: new Uint8Array(0), ...extra });
for (let i = 0; i < 50; i++) nodes[0].send([msg(1, 2), msg(1, 3), msg(1, 9)]);
const snap = (data) => ({ metadata: { index: 5, term: 1, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } }, data });
nodes[1].send([msg(2, 3, { type: 9, snapshot: snap(new Uint8Array(3 << 20)) })]);
nodes[2].send([msg(3, 1, { type: 9, snapshot: snap(new Uint8Array(0)) })]);
const deadline = Date.now() + 5000;
while (got.length < 101 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
nodes[1].setLinkFilter(() => ({ delayMs: 60_000 }));
nodes[1].send([msg(2, 1)]);
await Promise.all([...nodes, stranger].map((n) => n.close()));
console.log('closed after ' + got.length + ' messages');
// Destroyed sockets finish closing within a turn or two; then nothing of ours may remain.
await new Promise((r) => setImmediate(r));
await new Promise((r) => setImmediate(r));
console.log('resources ' + JSON.stringify(process.getActiveResourcesInfo()));
`;

describe('PeerTransport.close', () => {
  it('releases every socket and timer: the process exits on its own', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', childScript], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exit = await new Promise<number | 'hung'>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('hung');
      }, 15_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code ?? -1);
      });
    });
    assert.equal(exit, 0, `child did not exit cleanly (stdout: ${stdout}, stderr: ${stderr})`);
    // Nothing (not even a lingering rejected socket) may be left once close() resolved.
    const resources = JSON.parse(/resources (.*)/.exec(stdout)?.[1] ?? 'null') as string[] | null;
    assert.ok(resources !== null, `no resource report (stdout: ${stdout})`);
    const ours = resources.filter((r) => /TCP|Timeout|Immediate/.test(r));
    assert.deepEqual(ours, [], `handles left after close(): ${resources.join(', ')}`);
    assert.match(stdout, /closed after (10[1-9]|1[1-9]\d) messages/);
  });
});
