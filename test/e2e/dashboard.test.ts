// /dashboard in a real browser (Debian's chromium driven by playwright-core) against a real
// 3-member cluster: the page shows the three members and the leader, follows a write (header
// revision, key browser with history, watch tail) and a leader kill, and its Capacity panel shows
// a row per resource and the write rate recorded in the cluster; with auth on, the key browser is
// refused until the page signs in. Screenshots are kept in
// $CONCORD_TEST_ARTEFACTS/dashboard (default: <tmp>/concord-test-artefacts/dashboard).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { CAPACITY_RECORD_KEY, encodeRecord } from '../../src/cli/capacity/recorded.js';
import type { MeasuredRate } from '../../src/cli/capacity/report.js';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { memberStatus } from '../support/process-cluster.js';

// The functions below run inside the page; these are the few DOM shapes they use (the test
// compiles without the DOM library).
interface DomElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<DomElement> & ArrayLike<DomElement>;
  getElementById(id: string): DomElement | null;
};

const chromiumPath = process.env.CONCORD_CHROMIUM ?? '/usr/bin/chromium';
const artefactDir = join(
  process.env.CONCORD_TEST_ARTEFACTS ?? join(tmpdir(), 'concord-test-artefacts'),
  'dashboard',
);
const recordedRate: MeasuredRate = {
  writesPerSec: 1234,
  clients: 64,
  valueBytes: 256,
  durationSec: 5,
  measuredAt: '2026-12-05T10:00:00.000Z',
  source: 'bench',
};
const skip = existsSync(chromiumPath)
  ? false
  : `chromium not found at ${chromiumPath} (apt-get install -y chromium; .ci/run installs it)`;

describe('/dashboard in chromium', { skip, timeout: 180_000 }, () => {
  let cluster: ProcessCluster;
  let browser: Browser;
  let page: Page;
  before(async () => {
    mkdirSync(artefactDir, { recursive: true });
    const { chromium } = await import('playwright-core');
    [cluster, browser] = await Promise.all([
      startConcordCluster({ size: 3, startTimeoutMs: 60_000 }),
      chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      }),
    ]);
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    // Write actions confirm first: the test accepts every dialog it meets.
    page.on('dialog', (dialog) => void dialog.accept());
  });
  after(async () => {
    await browser?.close();
    await cluster?.dispose();
  });

  const capacityRows = () =>
    page.$$eval('tr.capacity-row', (rows) =>
      rows.map((row) => ({
        resource: (row as unknown as DomElement).dataset.resource,
        share: (row as unknown as DomElement).dataset.share,
        cells: [...(row as unknown as { cells: Iterable<DomElement> }).cells].map((c) => c.textContent ?? ''),
      })),
    );

  const roles = () =>
    page.$$eval('tr.member', (rows) =>
      rows.map((row) => ({
        name: (row as unknown as DomElement).dataset.name,
        role: (row as unknown as DomElement).dataset.role,
      })),
    );

  it('shows the members and the leader, follows a write and a leader kill', async () => {
    await cluster.withLogsOnFailure(async () => {
      const leader = await cluster.leaderIndex();
      const viewer = [0, 1, 2].find((i) => i !== leader)!;
      const response = await page.goto(`${cluster.endpoint(viewer)}/dashboard`);
      assert.equal(response?.status(), 200);
      await page.waitForFunction(() => document.querySelectorAll('tr.member').length === 3, undefined, {
        timeout: 15_000,
      });
      await page.waitForFunction(() => document.querySelectorAll('tr.member[data-role=leader]').length === 1);
      const leaderName = cluster.member(leader).name;
      assert.deepEqual(
        (await roles()).map((r) => r.name).sort(),
        [0, 1, 2].map((i) => cluster.member(i).name).sort(),
      );
      assert.equal((await roles()).find((r) => r.role === 'leader')?.name, leaderName);
      assert.match((await page.textContent('#leader')) ?? '', new RegExp(leaderName));
      assert.equal(await page.isDisabled('#move-leader'), true, 'write actions are off by default');

      // The Capacity panel: a row per resource with sensible values, then the write rate a
      // `check capacity --publish` recorded in the cluster.
      await page.waitForFunction(() => document.querySelectorAll('tr.capacity-row').length === 7, undefined, {
        timeout: 15_000,
      });
      const capacity = await capacityRows();
      assert.deepEqual(
        capacity.map((r) => r.resource),
        ['disk quota', 'memory', 'cpu', 'wal fsync', 'writes', 'keys', 'watchers'],
      );
      const disk = capacity.find((r) => r.resource === 'disk quota')!;
      assert.ok(Number(disk.share) > 0 && Number(disk.share) < 1, `disk share ${disk.share}`);
      assert.match(disk.cells[2] ?? '', /GiB/, 'the 2 GiB default quota is the limit');
      const cpu = capacity.find((r) => r.resource === 'cpu')!;
      assert.ok(Number(cpu.share) >= 0 && Number(cpu.share) < 1, `cpu share ${cpu.share}`);
      assert.equal(cpu.cells[2], '1 core');
      assert.equal(capacity.find((r) => r.resource === 'writes')?.cells[2], '-', 'no rate recorded yet');
      await etcdctlOk(['put', CAPACITY_RECORD_KEY, encodeRecord(cluster.endpoints(), recordedRate, [])], {
        endpoints: [cluster.endpoint(leader)],
      });
      await page.waitForFunction(
        () =>
          /sustains 1,234 writes\/s/.test(document.getElementById('capacity-measured')?.textContent ?? ''),
        undefined,
        { timeout: 15_000 },
      );
      await page.waitForFunction(
        () =>
          [...document.querySelectorAll('tr.capacity-row')].some(
            (r) => r.dataset.resource === 'writes' && /1,234\/s/.test(r.textContent ?? ''),
          ),
        undefined,
        { timeout: 15_000 },
      );
      assert.match((await page.textContent('#capacity-arithmetic')) ?? '', /disk quota full in: /);
      await page.screenshot({ path: join(artefactDir, '1-loaded.png'), fullPage: true });

      // A write: the header's revision catches up; the key browser and the watch tail show it.
      await page.fill('#watch-prefix', 'dash/');
      await page.click('#watch-start');
      const endpoints = [cluster.endpoint(leader)];
      await etcdctlOk(['put', 'dash/key', 'first'], { endpoints });
      await etcdctlOk(['put', 'dash/key', 'second'], { endpoints });
      const revision = Number((await memberStatus(cluster.endpoint(leader))).revision);
      await page.waitForFunction(
        (want) => Number(document.getElementById('revision')?.textContent) >= want,
        revision,
        { timeout: 15_000 },
      );
      await page.waitForFunction(
        () =>
          [...document.querySelectorAll('.watch-event')].some((e) =>
            e.textContent?.includes('dash/key = second'),
          ),
        undefined,
        { timeout: 15_000 },
      );
      await page.fill('#prefix', 'dash/');
      await page.click('#search');
      await page.click('tr.key a');
      await page.waitForSelector('#key-history');
      const detail = (await page.textContent('#key-detail')) ?? '';
      assert.match(detail, /second/);
      assert.match(
        (await page.textContent('#key-history')) ?? '',
        /first/,
        'the earlier value in the history',
      );
      await page.waitForFunction(() =>
        /ops\/s now/.test(document.getElementById('throughput-now')?.textContent ?? ''),
      );
      await page.screenshot({ path: join(artefactDir, '2-after-write.png'), fullPage: true });

      // The leader dies: its row turns unreachable and another member leads.
      await cluster.kill(leader);
      await page.waitForFunction(
        (dead) => {
          const rows = [...document.querySelectorAll('tr.member')];
          const leaders = rows.filter((r) => r.dataset.role === 'leader');
          return (
            rows.find((r) => r.dataset.name === dead)?.dataset.role === 'unreachable' &&
            leaders.length === 1 &&
            leaders[0]!.dataset.name !== dead
          );
        },
        leaderName,
        { timeout: 30_000 },
      );
      const newLeader = await cluster.leaderIndex(30_000);
      assert.equal((await roles()).find((r) => r.role === 'leader')?.name, cluster.member(newLeader).name);
      await page.screenshot({ path: join(artefactDir, '3-after-leader-kill.png'), fullPage: true });
      process.stderr.write(`dashboard screenshots: ${artefactDir}\n`);
    });
  });

  // Runs after the leader kill: two members are left, which is a quorum.
  it('with auth on, the key browser is refused until the page signs in', async () => {
    await cluster.withLogsOnFailure(async () => {
      const live = await cluster.leaderIndex(30_000);
      const endpoints = [cluster.endpoint(live)];
      await etcdctlOk(['user', 'add', 'root:dash-secret'], { endpoints });
      await etcdctlOk(['auth', 'enable'], { endpoints });
      await etcdctlOk(['--user', 'root:dash-secret', 'put', 'dash/private', 'p'], { endpoints });
      await page.goto(`${cluster.endpoint(live)}/dashboard`);
      const search = async () => {
        await page.fill('#prefix', 'dash/');
        await page.click('#search');
        await page.waitForSelector('#keys tr');
        return page.$$eval('#keys tr', (rows) =>
          rows.map((r) => ({
            key: (r as unknown as { className: string }).className === 'key',
            text: (r as unknown as DomElement).textContent ?? '',
          })),
        );
      };
      const refused = await search();
      assert.equal(refused.filter((r) => r.key).length, 0, 'no keys without a token');
      assert.match(refused.map((r) => r.text).join(' '), /etcdserver: /, "etcd's refusal shown");

      await page.fill('#auth-user', 'root');
      await page.fill('#auth-password', 'wrong');
      await page.click('#auth-signin');
      await page.waitForFunction(() =>
        /sign-in failed: etcdserver: authentication failed/.test(
          document.getElementById('auth-who')?.textContent ?? '',
        ),
      );
      await page.fill('#auth-password', 'dash-secret');
      await page.click('#auth-signin');
      await page.waitForFunction(
        () => document.getElementById('auth-who')?.textContent === 'signed in as root',
      );
      const allowed = await search();
      assert.ok(
        allowed.some((r) => r.key && r.text === 'dash/private'),
        `keys after signing in: ${JSON.stringify(allowed)}`,
      );
      await page.screenshot({ path: join(artefactDir, '4-signed-in.png'), fullPage: true });
    });
  });
});
