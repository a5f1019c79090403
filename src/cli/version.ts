// Concord's own version: package.json's, read once. The etcd API version a member reports
// (Status.version, /version's etcdserver) is a different thing: see ETCD_API_VERSION.

import { readFileSync } from 'node:fs';

/** dist/src/cli/version.js → the package root, in the repository and in an installed package. */
const PACKAGE_JSON_URL = new URL('../../../package.json', import.meta.url);

function readPackageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(PACKAGE_JSON_URL, 'utf8'));
  const version = (parsed as { version?: unknown }).version;
  if (typeof version !== 'string') throw new Error(`${PACKAGE_JSON_URL.pathname} has no "version" string`);
  return version;
}

export const CONCORD_VERSION = readPackageVersion();
