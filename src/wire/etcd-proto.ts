// Loads our etcd v3 .proto files once. The files live in <package root>/proto; the package root
// is found by walking up from this module to the directory holding package.json, which works
// both from src (ts sources) and from a build dir (dist/src/api, .build/x/src/api).

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const protoFiles = ['etcdserverpb/rpc.proto', 'v3lockpb/v3lock.proto', 'v3electionpb/v3election.proto'];

/** The load options shape every wire object (see wire.ts). */
export const protoLoadOptions: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
};

export function findProtoDir(startUrl: string = import.meta.url): string {
  const depthMax = 12;
  let dir = dirname(fileURLToPath(startUrl));
  for (let depth = 0; depth < depthMax; depth++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'proto'))) return join(dir, 'proto');
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`cannot find the proto/ directory above ${fileURLToPath(startUrl)}`);
}

let cached: protoLoader.PackageDefinition | undefined;

export function etcdPackageDefinition(): protoLoader.PackageDefinition {
  if (cached === undefined) {
    cached = protoLoader.loadSync(protoFiles, { ...protoLoadOptions, includeDirs: [findProtoDir()] });
  }
  return cached;
}

export type EtcdServiceName =
  | 'etcdserverpb.KV'
  | 'etcdserverpb.Watch'
  | 'etcdserverpb.Lease'
  | 'etcdserverpb.Cluster'
  | 'etcdserverpb.Maintenance'
  | 'etcdserverpb.Auth'
  | 'v3lockpb.Lock'
  | 'v3electionpb.Election';

export function serviceDefinition(name: EtcdServiceName): ServiceDefinition {
  const definition = etcdPackageDefinition()[name];
  if (definition === undefined || 'format' in definition) throw new Error(`${name} is not a service`);
  return definition as unknown as ServiceDefinition;
}

export function messageDefinition(fullName: string): protoLoader.MessageTypeDefinition<object, object> {
  const definition = etcdPackageDefinition()[fullName];
  if (
    definition === undefined ||
    !('format' in definition) ||
    definition.format !== 'Protocol Buffer 3 DescriptorProto'
  ) {
    throw new Error(`${fullName} is not a message type`);
  }
  return definition as protoLoader.MessageTypeDefinition<object, object>;
}
