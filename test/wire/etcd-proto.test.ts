import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition } from '@grpc/grpc-js';
import {
  declaredServices,
  type EtcdServiceName,
  etcdPackageDefinition,
  serviceDefinition,
} from '../../src/wire/etcd-proto.js';

type AnyMethod = MethodDefinition<unknown, unknown> & {
  requestType: { type: { name: string } };
  responseType: { type: { name: string } };
  originalName?: string;
};

describe('service definitions made from the .proto text', () => {
  it('have exactly the methods, paths and streaming flags protobufjs reflects', () => {
    const reflected = etcdPackageDefinition();
    const reflectedServices = Object.keys(reflected).filter((name) => !('format' in reflected[name]!));
    assert.deepEqual([...declaredServices().keys()].sort(), reflectedServices.sort());
    for (const name of reflectedServices) {
      const lazy = serviceDefinition(name as EtcdServiceName) as unknown as Record<string, AnyMethod>;
      const real = reflected[name] as unknown as Record<string, AnyMethod>;
      assert.deepEqual(Object.keys(lazy).sort(), Object.keys(real).sort(), name);
      for (const [method, definition] of Object.entries(real)) {
        const mine = lazy[method]!;
        assert.equal(mine.path, definition.path);
        assert.equal(mine.requestStream, definition.requestStream, `${name}/${method}`);
        assert.equal(mine.responseStream, definition.responseStream, `${name}/${method}`);
        assert.equal(mine.requestType.type.name, definition.requestType.type.name);
        assert.equal(mine.responseType.type.name, definition.responseType.type.name);
        assert.equal(mine.originalName, definition.originalName);
      }
    }
  });

  it('(de)serialize as the reflected definitions do', () => {
    const kv = serviceDefinition('etcdserverpb.KV') as unknown as Record<string, AnyMethod>;
    const real = etcdPackageDefinition()['etcdserverpb.KV'] as unknown as Record<string, AnyMethod>;
    const request = { key: Buffer.from('k'), range_end: Buffer.from('l'), limit: '5' };
    const bytes = kv.Range!.requestSerialize(request);
    assert.deepEqual(bytes, real.Range!.requestSerialize(request));
    assert.deepEqual(kv.Range!.requestDeserialize(bytes), real.Range!.requestDeserialize(bytes));
  });

  it('an unknown service is refused', () => {
    assert.throws(() => serviceDefinition('etcdserverpb.Nope' as EtcdServiceName), /not a service/);
  });
});

describe('start-up cost', () => {
  it('building the gRPC server and the JSON gateway does not load protobuf reflection', () => {
    const grpcServer = fileURLToPath(new URL('../../src/api/grpc-server.js', import.meta.url));
    const gateway = fileURLToPath(new URL('../../src/api/http-gateway.js', import.meta.url));
    const validate = fileURLToPath(new URL('../../src/api/validate.js', import.meta.url));
    // A child process: this test process may have loaded protobufjs already.
    const script = `
      const { createGrpcServer } = await import(${JSON.stringify(grpcServer)});
      const { createGatewayHandler } = await import(${JSON.stringify(gateway)});
      const { defaultValidationLimits } = await import(${JSON.stringify(validate)});
      const { createRequire } = await import('node:module');
      const backend = new Proxy({}, { get: () => () => { throw new Error('not called'); } });
      createGrpcServer(backend);
      createGatewayHandler(backend, { limits: defaultValidationLimits, watch: {}, serverVersion: '3.4.0', clusterVersion: '3.4.0' });
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('protobufjs'));
      console.log(loaded.length);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), '0', 'protobufjs modules were loaded at start-up');
  });
});
