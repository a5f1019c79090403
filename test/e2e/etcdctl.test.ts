// etcdctl 3.4 against a real 3-node Concord cluster, and where the output is deterministic, the
// same command against a real 3-node etcd 3.4 cluster with the outputs compared after
// normalisation. What is normalised, and why:
//  - member, cluster and lease IDs: both pick them freely (etcd hashes URLs and time).
//  - absolute revisions: every comparison is made relative to the revision at the start of its
//    block, because the two clusters have seen different traffic (both start a fresh store at
//    revision 1).
//  - raft_term, raft indexes, db sizes, versions, timings ("took = …", "remaining(…)").

import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { e2eEngines, startConcordCluster } from '../support/cluster.js';
import { startEtcdCluster } from '../support/etcd-cluster.js';
import { EtcdctlProcess, type EtcdctlResult, etcdctl, etcdctlOk } from '../support/etcdctl.js';
import { gatewayPost, type ProcessCluster, pollUntil } from '../support/process-cluster.js';

interface Pair {
  concord: ProcessCluster;
  etcd: ProcessCluster;
}

/** The store's current revision, read through the JSON gateway (an absent field means 0). */
async function currentRevision(cluster: ProcessCluster): Promise<number> {
  const endpoint = cluster.endpoints()[0] as string;
  const range = await gatewayPost(endpoint, '/v3/kv/range', { key: Buffer.from('\0').toString('base64') });
  return Number((range.header as { revision?: string }).revision ?? '0');
}

/** Replaces every JSON field whose name ends in "revision" by its offset from `base`. */
function relativeRevisions(value: unknown, base: number): unknown {
  if (Array.isArray(value)) return value.map((v) => relativeRevisions(v, base));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    if (/revision$/i.test(key) && field !== 0 && field !== '0') out[key] = `R+${Number(field) - base}`;
    else if (/^(cluster_id|member_id|raft_term|ID|id|leader|raftIndex|raftTerm|raftAppliedIndex)$/.test(key))
      out[key] = '<id>';
    else out[key] = relativeRevisions(field, base);
  }
  return out;
}

/** `-w fields` prints `"Name" : value` lines; revisions become relative, IDs and terms vanish. */
function normaliseFields(text: string, base: number): string {
  return text
    .split('\n')
    .map((line) => {
      const match = /^"(\w*Revision)" : (\d+)$/.exec(line);
      if (match) return `"${match[1]}" : R+${Number(match[2]) - base}`;
      if (/^"(ClusterID|MemberID|RaftTerm)" :/.test(line)) return '';
      return line;
    })
    .filter((line) => line !== '')
    .join('\n');
}

function errorLine(result: EtcdctlResult): string {
  const line = result.stderr.split('\n').find((l) => l.startsWith('Error:'));
  return line ?? `<no Error: line> ${result.stderr}`;
}

async function runBoth(
  pair: Pair,
  args: string[],
  stdin?: string,
): Promise<{ concord: EtcdctlResult; etcd: EtcdctlResult }> {
  const [concord, etcd] = await Promise.all([
    etcdctl(args, { endpoints: pair.concord.endpoints(), stdin }),
    etcdctl(args, { endpoints: pair.etcd.endpoints(), stdin }),
  ]);
  return { concord, etcd };
}

/** Runs `args` on both clusters; both must succeed and print the same text. */
async function sameOutput(pair: Pair, args: string[], stdin?: string): Promise<string> {
  const { concord, etcd } = await runBoth(pair, args, stdin);
  assert.equal(etcd.code, 0, `etcd failed: ${etcd.stderr}`);
  assert.equal(concord.code, 0, `concord failed on etcdctl ${args.join(' ')}: ${concord.stderr}`);
  assert.equal(concord.stdout, etcd.stdout, `etcdctl ${args.join(' ')}`);
  return concord.stdout;
}

async function onBoth<T>(
  pair: Pair,
  body: (cluster: ProcessCluster) => Promise<T>,
): Promise<{ concord: T; etcd: T }> {
  const [concord, etcd] = await Promise.all([body(pair.concord), body(pair.etcd)]);
  return { concord, etcd };
}

/** The suite runs on both engines under `npm test`; CONCORD_E2E_CONSENSUS picks one (see e2eEngines). */
const E2E_ENGINES = ['raft', 'multi-paxos'] as const;

for (const consensus of e2eEngines(E2E_ENGINES)) {
  describe(`etcdctl against a 3-node Concord cluster on ${consensus} (compared with etcd 3.4)`, {
    timeout: 180_000,
  }, () => {
    let pair: Pair;
    let concord: ProcessCluster;
    let scratchDir: string;
    const ctl = (args: string[], stdin?: string) => etcdctl(args, { endpoints: concord.endpoints(), stdin });
    const ctlOk = (args: string[]) => etcdctlOk(args, { endpoints: concord.endpoints() });
    const check = (body: () => Promise<void>) => () => concord.withLogsOnFailure(body);

    before(async () => {
      // allSettled: when one cluster fails to start, the other must still be disposed, or its
      // processes would keep the test runner alive.
      const [c, e] = await Promise.allSettled([
        startConcordCluster({ size: 3, consensus }),
        startEtcdCluster({ size: 3 }),
      ]);
      if (c.status === 'rejected' || e.status === 'rejected') {
        await Promise.all([c, e].map((r) => (r.status === 'fulfilled' ? r.value.dispose() : undefined)));
        throw c.status === 'rejected' ? c.reason : (e as PromiseRejectedResult).reason;
      }
      pair = { concord: c.value, etcd: e.value };
      concord = c.value;
      scratchDir = await mkdtemp(join(tmpdir(), 'concord-e2e-etcdctl-'));
    });

    after(async () => {
      await Promise.all([pair?.concord.dispose(), pair?.etcd.dispose()]);
      if (scratchDir !== undefined) await rm(scratchDir, { recursive: true, force: true });
    });

    it(
      'a fresh cluster is at revision 1 and the first put creates revision 2, as in etcd',
      check(async () => {
        const fresh = await onBoth(pair, currentRevision);
        assert.equal(fresh.etcd, 1);
        assert.equal(fresh.concord, fresh.etcd, 'revision of an empty store');
        const put = await runBoth(pair, ['put', 'fresh/k', 'v', '-w', 'json']);
        const revisionOf = (r: EtcdctlResult) =>
          (JSON.parse(r.stdout) as { header: { revision: number } }).header.revision;
        assert.equal(revisionOf(put.concord), revisionOf(put.etcd));
      }),
    );

    it(
      'put and get print what etcd prints (prefix, limit, sort, order, keys-only, value-only, count-only)',
      check(async () => {
        for (const [key, value] of [
          ['kv/c', 'cherry'],
          ['kv/a', 'banana'],
          ['kv/e', 'apple'],
          ['kv/b', 'date'],
          ['kv/d', 'elder'],
          ['kv0', 'outside'],
        ]) {
          assert.equal(await sameOutput(pair, ['put', key as string, value as string]), 'OK\n');
        }
        assert.equal(await sameOutput(pair, ['get', 'kv/a']), 'kv/a\nbanana\n');
        await sameOutput(pair, ['get', 'kv/', '--prefix']);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '--limit', '2']);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '--sort-by', 'VALUE', '--order', 'DESCEND']);
        await sameOutput(pair, [
          'get',
          'kv/',
          '--prefix',
          '--sort-by',
          'KEY',
          '--order',
          'DESCEND',
          '--limit',
          '3',
        ]);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '--sort-by', 'VALUE', '--order', 'ASCEND']);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '--keys-only']);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '--print-value-only']);
        await sameOutput(pair, ['get', 'kv/b', 'kv/d']);
        await sameOutput(pair, ['get', 'kv/', '--from-key', '--keys-only']);
        await sameOutput(pair, ['get', 'kv/', '--prefix', '-w', 'simple']);
        assert.equal(await sameOutput(pair, ['get', 'missing']), '');
      }),
    );

    it(
      'get -w json and -w fields match etcd up to IDs and absolute revisions; --rev reads history',
      check(async () => {
        const bases = await onBoth(pair, currentRevision);
        for (const cluster of [pair.concord, pair.etcd]) {
          await etcdctlOk(['put', 'hist/k', 'v1'], { endpoints: cluster.endpoints() });
          await etcdctlOk(['put', 'hist/k', 'v2'], { endpoints: cluster.endpoints() });
          await etcdctlOk(['put', 'hist/other', 'x'], { endpoints: cluster.endpoints() });
        }
        const json = await runBoth(pair, ['get', 'hist/', '--prefix', '-w', 'json']);
        assert.equal(json.concord.code, 0, json.concord.stderr);
        assert.deepEqual(
          relativeRevisions(JSON.parse(json.concord.stdout), bases.concord),
          relativeRevisions(JSON.parse(json.etcd.stdout), bases.etcd),
        );
        const fields = await runBoth(pair, ['get', 'hist/k', '-w', 'fields']);
        assert.equal(fields.concord.code, 0, fields.concord.stderr);
        assert.equal(
          normaliseFields(fields.concord.stdout, bases.concord),
          normaliseFields(fields.etcd.stdout, bases.etcd),
        );
        // --rev at "first put" must show v1 on both.
        const old = await onBoth(pair, (c) =>
          etcdctlOk(['get', 'hist/k', `--rev=${(c === pair.concord ? bases.concord : bases.etcd) + 1}`], {
            endpoints: c.endpoints(),
          }),
        );
        assert.equal(old.concord, 'hist/k\nv1\n');
        assert.equal(old.etcd, 'hist/k\nv1\n');
      }),
    );

    it(
      'del prints the deleted count and --prev-kv the deleted pairs, as etcd does',
      check(async () => {
        for (const key of ['del/a', 'del/b', 'del/c'])
          await sameOutput(pair, ['put', key, `value-of-${key}`]);
        assert.equal(await sameOutput(pair, ['del', 'del/a']), '1\n');
        assert.equal(await sameOutput(pair, ['del', 'del/nothing']), '0\n');
        assert.equal(
          await sameOutput(pair, ['del', 'del/', '--prefix', '--prev-kv']),
          '2\ndel/b\nvalue-of-del/b\ndel/c\nvalue-of-del/c\n',
        );
        assert.equal(await sameOutput(pair, ['get', 'del/', '--prefix']), '');
      }),
    );

    it(
      'txn from stdin takes the success branch when compares hold and the failure branch otherwise',
      check(async () => {
        await sameOutput(pair, ['put', 'txn/k', 'one']);
        const succeed = 'value("txn/k") = "one"\n\nput txn/k two\nget txn/k\n\nput txn/k never\n\n';
        assert.equal(await sameOutput(pair, ['txn'], succeed), 'SUCCESS\n\nOK\n\ntxn/k\ntwo\n');
        const fail =
          'value("txn/k") = "one"\nmod("txn/k") > "0"\n\nput txn/k never\n\nput txn/other else\nget txn/k\n\n';
        assert.equal(await sameOutput(pair, ['txn'], fail), 'FAILURE\n\nOK\n\ntxn/k\ntwo\n');
        assert.equal(
          await sameOutput(pair, ['txn'], 'version("txn/absent") = "0"\n\ndel txn/other\n\n\n'),
          'SUCCESS\n\n1\n',
        );
        // --interactive prints its prompts to stdout but reads the same input from the pipe.
        const interactive = 'value("txn/k") = "two"\n\nput txn/k three\n\nput txn/k no\n\n';
        assert.equal(
          await sameOutput(pair, ['txn', '-i'], interactive),
          'compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nOK\n',
        );
        assert.equal(await sameOutput(pair, ['get', 'txn/', '--prefix']), 'txn/k\nthree\n');
      }),
    );

    it(
      'watch --prefix streams puts and deletes in order; --rev replays history; --prev-kv shows old values',
      check(async () => {
        const bases = await onBoth(pair, currentRevision);
        const outputs = await onBoth(pair, async (cluster) => {
          const live = new EtcdctlProcess(['watch', '--prefix', 'watch/'], cluster.endpoints());
          const withPrev = new EtcdctlProcess(
            ['watch', '--prefix', '--prev-kv', 'watch/'],
            cluster.endpoints(),
          );
          try {
            // The watch is registered once etcdctl connected; a put we make after a short poll of
            // a sentinel proves it: keep putting the sentinel until the watcher prints it.
            let sentinelPuts = 0;
            await pollUntil('watchers to be registered', 10_000, async () => {
              sentinelPuts++;
              await etcdctlOk(['put', 'watch/sentinel', `s${sentinelPuts}`], {
                endpoints: cluster.endpoints(),
              });
              return live.stdout.includes('watch/sentinel') && withPrev.stdout.includes('watch/sentinel')
                ? true
                : undefined;
            });
            // Earlier sentinel puts may still be on their way; events arrive in revision order, so
            // once the last sentinel is printed none can land after the mark.
            const lastSentinel = `watch/sentinel\ns${sentinelPuts}\n`;
            await live.waitFor('the last sentinel', (text) => text.endsWith(lastSentinel));
            await withPrev.waitFor('the last sentinel', (text) => text.endsWith(lastSentinel));
            const mark = [live.stdout.length, withPrev.stdout.length];
            const ep = { endpoints: cluster.endpoints() };
            await etcdctlOk(['put', 'watch/a', '1'], ep);
            await etcdctlOk(['put', 'watch/b', '2'], ep);
            await etcdctlOk(['put', 'watch/a', '3'], ep);
            await etcdctlOk(['put', 'other', 'not-watched'], ep);
            await etcdctlOk(['del', 'watch/b'], ep);
            await live.waitFor('the delete', (s) => s.includes('DELETE'));
            await withPrev.waitFor('the delete', (s) => s.includes('DELETE'));
            return [live.stdout.slice(mark[0]), withPrev.stdout.slice(mark[1])];
          } finally {
            await live.stop();
            await withPrev.stop();
          }
        });
        assert.equal(
          outputs.concord[0],
          'PUT\nwatch/a\n1\nPUT\nwatch/b\n2\nPUT\nwatch/a\n3\nDELETE\nwatch/b\n\n',
        );
        assert.equal(outputs.concord[0], outputs.etcd[0]);
        assert.equal(outputs.concord[1], outputs.etcd[1]);

        // Replay from the revision of the first sentinel put: history comes back without new writes.
        const replays = await onBoth(pair, async (cluster) => {
          const base = cluster === pair.concord ? bases.concord : bases.etcd;
          const replay = new EtcdctlProcess(
            ['watch', '--prefix', `--rev=${base + 1}`, 'watch/'],
            cluster.endpoints(),
          );
          try {
            await replay.waitFor('the replayed delete', (s) => s.includes('DELETE'));
            return replay.stdout.replace(/^(PUT\nwatch\/sentinel\ns\d+\n)+/, '');
          } finally {
            await replay.stop();
          }
        });
        assert.equal(
          replays.concord,
          'PUT\nwatch/a\n1\nPUT\nwatch/b\n2\nPUT\nwatch/a\n3\nDELETE\nwatch/b\n\n',
        );
        assert.equal(replays.concord, replays.etcd);
      }),
    );

    it(
      'lease grant, put --lease, timetolive --keys, keep-alive --once, list and revoke print what etcd prints',
      check(async () => {
        const outputs = await onBoth(pair, async (cluster) => {
          const ep = { endpoints: cluster.endpoints() };
          const granted = await etcdctlOk(['lease', 'grant', '60'], ep);
          const id = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(granted)?.[1];
          assert.ok(id !== undefined, `unexpected grant output: ${granted}`);
          // etcd lists attached keys in Go map order (random), so the list is sorted here.
          const sortAttached = (text: string) =>
            text.replace(
              /attached keys\(\[(.*)\]\)/,
              (_, keys: string) => `attached keys([${keys.split(' ').sort().join(' ')}])`,
            );
          const hide = (text: string) =>
            sortAttached(text.replaceAll(id, '<LEASE>').replace(/remaining\(\d+s\)/, 'remaining(Ns)'));
          const lines = [hide(granted)];
          lines.push(await etcdctlOk(['put', 'lease/k1', 'v', `--lease=${id}`], ep));
          lines.push(await etcdctlOk(['put', 'lease/k2', 'v', `--lease=${id}`], ep));
          lines.push(hide(await etcdctlOk(['lease', 'timetolive', id, '--keys'], ep)));
          lines.push(hide(await etcdctlOk(['lease', 'keep-alive', '--once', id], ep)));
          const list = await etcdctlOk(['lease', 'list'], ep);
          assert.ok(list.includes(`${id}\n`), `lease list lacks ${id}: ${list}`);
          lines.push(hide(await etcdctlOk(['lease', 'revoke', id], ep)));
          lines.push(await etcdctlOk(['get', 'lease/', '--prefix'], ep));
          lines.push(hide(await etcdctlOk(['lease', 'timetolive', id], ep)));
          const revokedAgain = await etcdctl(['lease', 'revoke', id], ep);
          lines.push(errorLine(revokedAgain).replaceAll(id, '<LEASE>'));
          return lines;
        });
        assert.deepEqual(outputs.concord, outputs.etcd);
        assert.equal(outputs.concord[0], 'lease <LEASE> granted with TTL(60s)\n');
        assert.equal(
          outputs.concord[3],
          'lease <LEASE> granted with TTL(60s), remaining(Ns), attached keys([lease/k1 lease/k2])\n',
        );
        assert.equal(outputs.concord[7], 'lease <LEASE> already expired\n');
        assert.equal(
          outputs.concord[8],
          'Error: failed to revoke lease (etcdserver: requested lease not found)',
        );
      }),
    );

    it(
      'compaction: reading a compacted or future revision fails with etcd error text',
      check(async () => {
        const outputs = await onBoth(pair, async (cluster) => {
          const ep = { endpoints: cluster.endpoints() };
          await etcdctlOk(['put', 'compact/k', 'v1'], ep);
          const first = await currentRevision(cluster);
          await etcdctlOk(['put', 'compact/k', 'v2'], ep);
          const latest = await currentRevision(cluster);
          const compacted = await etcdctlOk(['compaction', String(latest)], ep);
          assert.equal(compacted, `compacted revision ${latest}\n`);
          const readOld = await etcdctl(['get', 'compact/k', `--rev=${first}`], ep);
          const compactAgain = await etcdctl(['compaction', String(first)], ep);
          const future = await etcdctl(['get', 'compact/k', `--rev=${latest + 1000}`], ep);
          const readLatest = await etcdctlOk(['get', 'compact/k', `--rev=${latest}`], ep);
          return [errorLine(readOld), errorLine(compactAgain), errorLine(future), readLatest];
        });
        assert.deepEqual(outputs.concord, [
          'Error: etcdserver: mvcc: required revision has been compacted',
          'Error: etcdserver: mvcc: required revision has been compacted',
          'Error: etcdserver: mvcc: required revision is a future revision',
          'compact/k\nv2\n',
        ]);
        assert.deepEqual(outputs.concord, outputs.etcd);
      }),
    );

    it(
      'member list shows three started voting members with their URLs',
      check(async () => {
        const list = JSON.parse(await ctlOk(['member', 'list', '-w', 'json'])) as {
          members: Array<{ name: string; peerURLs: string[]; clientURLs: string[]; isLearner?: boolean }>;
        };
        const names = list.members.map((m) => m.name).sort();
        assert.deepEqual(names, ['m0', 'm1', 'm2']);
        for (const member of list.members) {
          const mine = concord.members.find((m) => m.name === member.name);
          assert.deepEqual(member.peerURLs, [mine?.peerUrl]);
          assert.deepEqual(member.clientURLs, [mine?.clientUrl]);
          assert.notEqual(member.isLearner, true);
        }
        const simple = await ctlOk(['member', 'list']);
        assert.equal(simple.trim().split('\n').length, 3);
        assert.match(
          simple,
          /^[0-9a-f]+, started, m0, http:\/\/127\.0\.0\.1:\d+, http:\/\/127\.0\.0\.1:\d+, false$/m,
        );
      }),
    );

    it(
      'snapshot save writes a non-empty file; defrag and alarm list/disarm succeed',
      check(async () => {
        const file = join(scratchDir, 'snap.db');
        const saved = await etcdctl(['snapshot', 'save', file], {
          endpoints: [concord.endpoint(0)],
          timeoutMs: 30_000,
        });
        assert.equal(saved.code, 0, saved.stderr);
        assert.match(saved.stdout, /Snapshot saved at /);
        assert.ok(existsSync(file) && statSync(file).size > 0);
        const defrag = await ctl(['defrag', '--cluster']);
        assert.equal(defrag.code, 0, defrag.stderr);
        assert.equal(
          (defrag.stdout.match(/Finished defragmenting etcd member\[/g) ?? []).length,
          3,
          defrag.stdout,
        );
        assert.equal(await sameOutput(pair, ['alarm', 'list']), '');
        assert.equal(await sameOutput(pair, ['alarm', 'disarm']), '');
      }),
    );

    // These run against etcd too: etcd passing them shows the expectations (and the harness's
    // member add/remove) are right, so a Concord failure is Concord's.
    for (const kind of ['etcd', 'concord'] as const) {
      describe(`on ${kind}`, () => {
        let cluster!: ProcessCluster;
        before(() => {
          cluster = kind === 'etcd' ? pair.etcd : pair.concord;
        });
        const checkHere = (body: () => Promise<void>) => () => cluster.withLogsOnFailure(body);

        it(
          'endpoint health, status and hashkv answer for every member (--cluster)',
          checkHere(async () => {
            const health = await etcdctl(['endpoint', 'health', '--cluster'], {
              endpoints: cluster.endpoints(),
            });
            assert.equal(health.code, 0, health.stderr);
            assert.equal(
              (health.stderr.match(/is healthy: successfully committed proposal/g) ?? []).length,
              3,
              health.stderr,
            );
            const status = await etcdctl(['endpoint', 'status', '--cluster', '-w', 'json'], {
              endpoints: cluster.endpoints(),
            });
            assert.equal(status.code, 0, status.stderr);
            const rows = JSON.parse(status.stdout) as Array<{
              Endpoint: string;
              Status: { leader: number; header: { member_id: number } };
            }>;
            assert.equal(rows.length, 3);
            const leaders = new Set(rows.map((r) => r.Status.leader));
            assert.equal(leaders.size, 1, 'every member names the same leader');
            const hashes = await etcdctl(['endpoint', 'hashkv', '--cluster', '-w', 'json'], {
              endpoints: cluster.endpoints(),
            });
            assert.equal(hashes.code, 0, hashes.stderr);
            const hashRows = JSON.parse(hashes.stdout) as Array<{ HashKV: { hash: number } }>;
            assert.equal(hashRows.length, 3);
            assert.equal(
              new Set(hashRows.map((r) => r.HashKV.hash)).size,
              1,
              'replicas hold the same keyspace',
            );
          }),
        );

        it(
          'move-leader hands leadership to the named follower',
          checkHere(async () => {
            const leader = await cluster.leaderIndex();
            const target = (leader + 1) % 3;
            const targetHex = BigInt(cluster.member(target).memberId).toString(16);
            const moved = await etcdctl(['move-leader', targetHex], {
              endpoints: [cluster.endpoint(leader)],
            });
            assert.equal(moved.code, 0, moved.stderr);
            assert.match(moved.stdout, new RegExp(`Leadership transferred from [0-9a-f]+ to ${targetHex}`));
            assert.equal(await cluster.leaderIndex(), target);
            const notLeader = await etcdctl(['move-leader', targetHex], {
              endpoints: [cluster.endpoint(leader)],
            });
            assert.notEqual(notLeader.code, 0, 'only the leader can transfer leadership');
          }),
        );

        it(
          'member add --learner, start it, promote once caught up, then remove it',
          checkHere(async () => {
            // etcd answers "rpc not supported for learner" to a learner, so talk to the voters only.
            const voters = { endpoints: [0, 1, 2].map((i) => cluster.endpoint(i)) };
            await etcdctlOk(['put', 'learner/k', 'before-join'], voters);
            const index = await cluster.addMember({ learner: true });
            // A joined member publishes its name and client URLs through the log ("started").
            await pollUntil('the learner to be listed as started', 10_000, async () => {
              const list = await etcdctlOk(['member', 'list'], voters);
              return /, started, m3, .*, true$/m.test(list) ? true : undefined;
            });
            // A learner cannot be promoted until its log is close to the leader's; retry until it is.
            await pollUntil('learner promotion', 20_000, async () => {
              const promoted = await etcdctl(
                ['member', 'promote', BigInt(cluster.member(index).memberId).toString(16)],
                voters,
              );
              return promoted.code === 0 ? promoted.stdout : undefined;
            });
            assert.match(await etcdctlOk(['member', 'list'], voters), /, started, m3, .*, false$/m);
            const read = await etcdctlOk(['get', 'learner/k', '--consistency=s'], {
              endpoints: [cluster.endpoint(index)],
            });
            assert.equal(read, 'learner/k\nbefore-join\n');
            const removed = await etcdctl(
              ['member', 'remove', BigInt(cluster.member(index).memberId).toString(16)],
              voters,
            );
            assert.equal(removed.code, 0, removed.stderr);
            assert.match(removed.stdout, /^Member +[0-9a-f]+ removed from cluster +[0-9a-f]+$/m);
            await cluster.retireMember(index);
            assert.equal((await etcdctlOk(['member', 'list'], voters)).trim().split('\n').length, 3);
          }),
        );
      });
    }
  });
}
