// Power loss, not only kill -9: a 3-member cluster on plfs mounts has its power cut under put
// load (whole cluster and single member), and no acknowledged write may be lost, no member may
// serve a diverged keyspace, and every member must come back. `npm run powerloss` runs the long
// campaign; this is the short one. The self-tests show the harness bites: with a sync removed on
// purpose from a write path, the same campaign fails.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UNSAFE_KEYSPACE_NO_SYNC_ENV, UNSAFE_WAL_NO_FDATASYNC_ENV } from '../../src/storage/wal.js';
import { type CampaignResult, type CutResult, runCampaign } from './campaign.js';
import { plfsUnavailableReason } from './plfs-mount.js';

const log = (line: string) => process.stderr.write(`[powerloss] ${line.split('\n')[0]}\n`);

function failedCuts(result: CampaignResult): CutResult[] {
  return result.cuts.filter((c) => c.lost.length > 0 || c.diverged || c.failure !== undefined);
}

describe('power loss (plfs)', () => {
  test('plfs can run here (fuse3, python3-fusepy, /dev/fuse; .ci/run installs them)', () => {
    assert.equal(plfsUnavailableReason(), undefined);
  });

  test('whole-cluster and single-member power cuts under load lose no acknowledged write', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    log(`campaign seed ${seed} (npm run powerloss -- --seed ${seed} --cuts 3 --member-cut-every 3)`);
    const result = await runCampaign({
      cuts: 3,
      seed,
      memberCutEvery: 3,
      loadMsMin: 500,
      loadMsMax: 1500,
      log,
    });
    const failed = failedCuts(result);
    assert.deepEqual(
      failed.map((c) => ({ cut: c.cut, lost: c.lost.slice(0, 5), diverged: c.diverged, failure: c.failure })),
      [],
      `seed ${seed}`,
    );
    assert.equal(result.cuts.length, 3, `seed ${seed}: every cut ran`);
    assert.ok(result.ackedTotal > 0, `seed ${seed}: the load got writes acknowledged`);
  });

  test('self-test: a keyspace without sync loses acknowledged writes or cannot come back', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    log(`keyspace-no-sync self-test seed ${seed}`);
    const result = await runCampaign({
      cuts: 3,
      seed,
      loadMsMin: 1000,
      loadMsMax: 2000,
      env: { [UNSAFE_KEYSPACE_NO_SYNC_ENV]: '1' },
      stopOnFailure: true,
      log,
    });
    assert.ok(failedCuts(result).length > 0, `seed ${seed}: the harness did not catch an unsynced keyspace`);
  });

  test('self-test: a WAL without fdatasync loses acknowledged writes or cannot come back', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    log(`WAL-no-fdatasync self-test seed ${seed}`);
    const result = await runCampaign({
      cuts: 3,
      seed,
      loadMsMin: 1000,
      loadMsMax: 2000,
      env: { [UNSAFE_WAL_NO_FDATASYNC_ENV]: '1' },
      stopOnFailure: true,
      log,
    });
    assert.ok(failedCuts(result).length > 0, `seed ${seed}: the harness did not catch an unsynced WAL`);
  });
});
