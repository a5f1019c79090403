// Loads our etcd v3 .proto files once. The files live in <package root>/proto; the package root
// is found by walking up from this module to the directory holding package.json, which works
// both from src (ts sources) and from a build dir (dist/src/api, .build/x/src/api).
//
// A member must not pay for protobuf reflection at start-up (loading protobufjs and building the
// types took ~90 ms of a ~600 ms start): service definitions are made from the services' lines
// of the .proto text, and each (de)serializer loads the reflected types on first use. The hot
// methods never do (the server swaps in the hand-written codecs, see api/grpc-codecs.ts).

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';

const protoFiles = [
  'etcdserverpb/rpc.proto',
  'v3lockpb/v3lock.proto',
  'v3electionpb/v3election.proto',
  'concordpb/admin.proto',
];

/** The load options shape every wire object (see wire.ts). */
export const protoLoadOptions: ProtoLoader.Options = {
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

let cached: ProtoLoader.PackageDefinition | undefined;

/** Every type and service, reflected by protobufjs (loaded on first call: a CommonJS package). */
export function etcdPackageDefinition(): ProtoLoader.PackageDefinition {
  if (cached === undefined) {
    const protoLoader = createRequire(import.meta.url)('@grpc/proto-loader') as typeof ProtoLoader;
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
  | 'v3electionpb.Election'
  | 'concordpb.Shard';

/**
 * A service's methods as grpc-js takes them: routes and streaming flags at once, (de)serializers
 * and the message types (requestType/responseType/originalName, non-enumerable) from the reflected
 * definition on first use.
 */
export function serviceDefinition(name: EtcdServiceName): ServiceDefinition {
  let definition = lazyServices.get(name);
  if (definition === undefined) {
    const methods = declaredServices().get(name);
    if (methods === undefined) throw new Error(`${name} is not a service`);
    const built: Record<string, AnyMethod> = {};
    for (const method of methods) built[method.name] = lazyMethod(name, method);
    definition = built as ServiceDefinition;
    lazyServices.set(name, definition);
  }
  return definition;
}

const lazyServices = new Map<string, ServiceDefinition>();

function reflectedService(name: string): ServiceDefinition {
  const definition = etcdPackageDefinition()[name];
  if (definition === undefined || 'format' in definition) throw new Error(`${name} is not a service`);
  return definition as unknown as ServiceDefinition;
}

type AnyMethod = MethodDefinition<unknown, unknown>;

function lazyMethod(service: string, method: DeclaredMethod): AnyMethod {
  let reflected: AnyMethod | undefined;
  const real = (): AnyMethod => {
    reflected ??= reflectedService(service)[method.name] as AnyMethod | undefined;
    if (reflected === undefined) throw new Error(`${service}/${method.name} is not in the reflected service`);
    return reflected;
  };
  const definition: AnyMethod = {
    path: `/${service}/${method.name}`,
    requestStream: method.requestStream,
    responseStream: method.responseStream,
    requestSerialize: (value) => real().requestSerialize(value),
    requestDeserialize: (bytes) => real().requestDeserialize(bytes),
    responseSerialize: (value) => real().responseSerialize(value),
    responseDeserialize: (bytes) => real().responseDeserialize(bytes),
  };
  for (const key of ['requestType', 'responseType', 'originalName'] as const) {
    Object.defineProperty(definition, key, {
      enumerable: false,
      get: () => (real() as unknown as Record<typeof key, unknown>)[key],
    });
  }
  return definition;
}

interface DeclaredMethod {
  name: string;
  requestStream: boolean;
  responseStream: boolean;
  /** Full name of the request message ("etcdserverpb.RangeRequest"). */
  requestType: string;
}

let declared: Map<string, DeclaredMethod[]> | undefined;

/** Services and their methods as the .proto files declare them (`service X {` / `rpc M(...) returns (...)`). */
export function declaredServices(): Map<string, DeclaredMethod[]> {
  if (declared !== undefined) return declared;
  const services = new Map<string, DeclaredMethod[]>();
  const dir = findProtoDir();
  for (const file of protoFiles) {
    const text = readFileSync(join(dir, file), 'utf8');
    const pkg = /^package\s+([\w.]+)\s*;/m.exec(text)?.[1];
    if (pkg === undefined) throw new Error(`${file} declares no package`);
    let methods: DeclaredMethod[] | undefined;
    for (const line of text.split('\n')) {
      const service = /^service\s+(\w+)\s*\{/.exec(line);
      if (service !== null) {
        methods = [];
        services.set(`${pkg}.${service[1]}`, methods);
        continue;
      }
      if (line.startsWith('}')) methods = undefined;
      const rpc =
        /^\s*rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)/.exec(
          line,
        );
      if (rpc === null) continue;
      if (methods === undefined) throw new Error(`${file}: rpc ${rpc[1]} outside a service`);
      const requestType = rpc[3]!;
      methods.push({
        name: rpc[1]!,
        requestStream: rpc[2] !== undefined,
        responseStream: rpc[4] !== undefined,
        requestType: requestType.includes('.') ? requestType : `${pkg}.${requestType}`,
      });
    }
  }
  declared = services;
  return services;
}

export function messageDefinition(fullName: string): ProtoLoader.MessageTypeDefinition<object, object> {
  const definition = etcdPackageDefinition()[fullName];
  if (
    definition === undefined ||
    !('format' in definition) ||
    definition.format !== 'Protocol Buffer 3 DescriptorProto'
  ) {
    throw new Error(`${fullName} is not a message type`);
  }
  return definition as ProtoLoader.MessageTypeDefinition<object, object>;
}
