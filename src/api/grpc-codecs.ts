// Swaps proto-loader's reflection-based (de)serializers for the hand-written codecs of
// wire/etcd-codecs.ts on the hot methods. Everything else keeps proto-loader's. The fast encoder
// throws ProtoShapeError on a value it does not take (a Long, a base64 string); such a response
// is then encoded by proto-loader, so a handler never fails because of the fast path.

import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  decodeDeleteRangeRequest,
  decodeLeaseKeepAliveRequest,
  decodePutRequest,
  decodeRangeRequest,
  decodeTxnRequest,
  encodeDeleteRangeResponse,
  encodeLeaseKeepAliveResponse,
  encodePutResponse,
  encodeRangeResponse,
  encodeTxnResponse,
  encodeWatchResponse,
  ProtoShapeError,
} from '../wire/etcd-codecs.js';
import type { EtcdServiceName } from '../wire/etcd-proto.js';

interface FastCodec {
  requestDeserialize?: (bytes: Buffer) => object;
  responseSerialize: (message: unknown) => Buffer;
}

/** Keyed "service/Method" with the service's full name, as in etcd-proto.ts. */
const fastCodecs: Readonly<Record<string, FastCodec>> = {
  'etcdserverpb.KV/Range': { requestDeserialize: decodeRangeRequest, responseSerialize: encodeRangeResponse },
  'etcdserverpb.KV/Put': { requestDeserialize: decodePutRequest, responseSerialize: encodePutResponse },
  'etcdserverpb.KV/DeleteRange': {
    requestDeserialize: decodeDeleteRangeRequest,
    responseSerialize: encodeDeleteRangeResponse,
  },
  'etcdserverpb.KV/Txn': { requestDeserialize: decodeTxnRequest, responseSerialize: encodeTxnResponse },
  'etcdserverpb.Watch/Watch': { responseSerialize: encodeWatchResponse },
  'etcdserverpb.Lease/LeaseKeepAlive': {
    requestDeserialize: decodeLeaseKeepAliveRequest,
    responseSerialize: encodeLeaseKeepAliveResponse,
  },
};

type Serialize = (message: unknown) => Buffer;

function withFallback(fast: Serialize, slow: Serialize): Serialize {
  return (message) => {
    try {
      return fast(message);
    } catch (error) {
      if (error instanceof ProtoShapeError) return slow(message);
      throw error;
    }
  };
}

/**
 * A copy of `definition` whose hot methods use the fast codecs. The shared definition from
 * etcd-proto.ts is left as it is (clients and tests use it for the reference encoding).
 */
export function withFastCodecs(service: EtcdServiceName, definition: ServiceDefinition): ServiceDefinition {
  const result: Record<string, ServiceDefinition[string]> = { ...definition };
  for (const [method, methodDefinition] of Object.entries(definition)) {
    const codec = fastCodecs[`${service}/${method}`];
    if (codec === undefined) continue;
    result[method] = {
      ...methodDefinition,
      requestDeserialize: codec.requestDeserialize ?? methodDefinition.requestDeserialize,
      responseSerialize: withFallback(
        codec.responseSerialize,
        methodDefinition.responseSerialize as Serialize,
      ),
    };
  }
  return result as ServiceDefinition;
}

/** Methods that get a fast codec, for tests that check the table matches the services. */
export const fastCodecMethods: readonly string[] = Object.keys(fastCodecs);
