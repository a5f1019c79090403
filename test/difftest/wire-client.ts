// A raw gRPC connection to one member: requests go out as the bytes we give, answers come back as
// the bytes the server sent plus the exact status code and message. Nothing in between retries,
// reconnects or rewrites an error, so what is compared is what a client on the wire would see.

import * as grpc from '@grpc/grpc-js';

/** Large enough that no answer of a generated sequence is cut by the client itself. */
const clientMessageBytesMax = 64 * 1024 * 1024;

export type UnaryOutcome = { ok: true; bytes: Buffer } | { ok: false; code: number; details: string };

const identity = (bytes: Buffer): Buffer => bytes;

export class WireConnection {
  private readonly client: grpc.Client;

  constructor(readonly address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': clientMessageBytesMax,
      'grpc.max_receive_message_length': clientMessageBytesMax,
    });
  }

  /** One unary call to `path` ("/etcdserverpb.KV/Range") with `body` as the request message. */
  unary(
    path: string,
    body: Buffer,
    timeoutMs: number,
    metadata = new grpc.Metadata(),
  ): Promise<UnaryOutcome> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        path,
        identity,
        identity,
        body,
        metadata,
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error) resolve({ ok: false, code: error.code, details: error.details });
          else resolve({ ok: true, bytes: response ?? Buffer.alloc(0) });
        },
      );
    });
  }

  /** A bidirectional stream over raw message bytes; the caller owns it and ends it. */
  bidi(path: string, metadata = new grpc.Metadata()): grpc.ClientDuplexStream<Buffer, Buffer> {
    return this.client.makeBidiStreamRequest(path, identity, identity, metadata);
  }

  close(): void {
    this.client.close();
  }
}
