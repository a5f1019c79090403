// HTTP/1.1 answers framed exactly as etcd's gateway frames them, which is Go's net/http under
// grpc-gateway v1 under etcd's CORS wrapper:
//  - header lines: etcd's three Access-Control-* lines and the handler's own, sorted by name
//    (Go writes a header map sorted), then Date, then Content-Length or Transfer-Encoding; no
//    Connection or Keep-Alive lines (Go sends none on a kept-alive HTTP/1.1 connection);
//  - a body Go's server buffered whole (up to 2048 bytes) goes with Content-Length; a longer one
//    is chunked, as one chunk;
//  - a gRPC error carries its trailer metadata: "Trailer: Grpc-Trailer-Content-Type" announced,
//    the body chunked, "Grpc-Trailer-Content-Type: application/grpc" after the last chunk;
//  - a stream writes `{"result":…}` and "\n" per message, flushed together: one chunk, or two
//    (the JSON, then the newline) when the JSON alone fills Go's 2048-byte buffer.

import type { ServerResponse } from 'node:http';
import { httpStatusFromGrpc, type WireStatus } from './errors.js';
import { goJsonStringify } from './go-json.js';

/** Bytes Go's http.Server buffers from a handler before it starts chunking (bufferBeforeChunkingSize). */
export const goResponseBufferBytes = 2048;

const corsHeaders: Array<[string, string]> = [
  ['Access-Control-Allow-Headers', 'accept, content-type, authorization'],
  ['Access-Control-Allow-Methods', 'POST, GET, OPTIONS, PUT, DELETE'],
  ['Access-Control-Allow-Origin', '*'],
];

const jsonContentType: [string, string] = ['Content-Type', 'application/json'];
const grpcMetadataContentType: [string, string] = ['Grpc-Metadata-Content-Type', 'application/grpc'];

type Framing = { contentLength: number } | 'chunked';

/** Writes the status line and header lines in Go's order; `after` follows Content-Length. */
export function writeGoHead(
  response: ServerResponse,
  status: number,
  handlerHeaders: Array<[string, string]>,
  framing: Framing,
  after: Array<[string, string]> = [],
): void {
  const lines = [...corsHeaders, ...handlerHeaders].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  lines.push(['Date', new Date().toUTCString()]);
  if (framing === 'chunked') lines.push(...after, ['Transfer-Encoding', 'chunked']);
  else lines.push(['Content-Length', String(framing.contentLength)], ...after);
  response.sendDate = false;
  // Keeps the connection alive without Node's "Connection: keep-alive" / "Keep-Alive" lines.
  response.removeHeader('connection');
  response.writeHead(status, lines.flat());
}

/** Go's http.Error: a text/plain line (Not Found, Method Not Allowed, 404 page not found). */
export function sendGoText(response: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  writeGoHead(
    response,
    status,
    [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['X-Content-Type-Options', 'nosniff'],
    ],
    { contentLength: Buffer.byteLength(body) },
  );
  response.end(body);
}

/** A body of known bytes, with Content-Length when Go would have buffered it whole. */
export function sendGoBody(
  response: ServerResponse,
  status: number,
  handlerHeaders: Array<[string, string]>,
  body: string,
): void {
  const length = Buffer.byteLength(body);
  if (length <= goResponseBufferBytes) {
    writeGoHead(response, status, handlerHeaders, { contentLength: length });
    response.end(body);
  } else {
    writeGoHead(response, status, handlerHeaders, 'chunked');
    response.end(body);
  }
}

/** A unary call's answer: the JSON message with the gRPC header metadata. */
export function sendUnaryResult(response: ServerResponse, json: Record<string, unknown>): void {
  sendGoBody(response, 200, [jsonContentType, grpcMetadataContentType], goJsonStringify(json));
}

/** grpc-gateway's error body: message twice and the code, fields at their default omitted. */
export function errorBody(status: WireStatus): string {
  return goJsonStringify({
    error: status.details === '' ? undefined : status.details,
    message: status.details === '' ? undefined : status.details,
    code: status.code === 0 ? undefined : status.code,
  });
}

/** An error the server returned: trailers announced, body chunked, trailer after it. */
export function sendServerError(response: ServerResponse, status: WireStatus): void {
  writeGoHead(
    response,
    httpStatusFromGrpc(status.code),
    [jsonContentType, ['Trailer', 'Grpc-Trailer-Content-Type']],
    'chunked',
  );
  response.write(errorBody(status));
  response.addTrailers({ 'Grpc-Trailer-Content-Type': 'application/grpc' });
  response.end();
}

/** An error of the gateway itself (the request did not decode): no gRPC metadata at all. */
export function sendGatewayError(response: ServerResponse, status: WireStatus): void {
  sendGoBody(response, httpStatusFromGrpc(status.code), [jsonContentType], errorBody(status));
}

const httpStatusText: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  412: 'Precondition Failed',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/**
 * One streaming answer. The header lines go out with the first message, or with the end or the
 * error, as grpc-gateway's do (it cannot write them before the gRPC stream sent its headers), so
 * a stream that never answers (a watch whose only request cancels nothing) sends nothing at all.
 */
export class GatewayStreamWriter {
  private headSent = false;

  /** `grpcMetadata`: the request's first message reached the server (its headers are relayed). */
  constructor(
    private readonly response: ServerResponse,
    private readonly grpcMetadata: () => boolean,
  ) {}

  get gone(): boolean {
    return this.response.writableEnded || this.response.destroyed;
  }

  /** `answered`: the server sent a message (with its headers) before this point. */
  private head(status: number, answered: boolean): void {
    if (this.headSent) return;
    this.headSent = true;
    const headers: Array<[string, string]> = [jsonContentType];
    if (answered && this.grpcMetadata()) headers.push(grpcMetadataContentType);
    writeGoHead(this.response, status, headers, 'chunked');
  }

  /** Writes one message line; false when the socket buffer is full (wait for 'drain'). */
  send(json: Record<string, unknown>): boolean {
    if (this.gone) return false;
    this.head(200, true);
    const line = goJsonStringify({ result: json });
    if (Buffer.byteLength(line) < goResponseBufferBytes) return this.response.write(`${line}\n`);
    this.response.write(line);
    return this.response.write('\n');
  }

  /** Ends the stream after its last message. */
  end(): void {
    if (this.gone) return;
    this.head(200, true);
    this.response.end();
  }

  /** grpc-gateway's stream error: one {"error":…} object (no newline after it), then the end. */
  fail(status: WireStatus): void {
    if (this.gone) return;
    const httpCode = httpStatusFromGrpc(status.code);
    // A stream that fails before its first message is a trailers-only gRPC answer: no header
    // metadata to relay.
    this.head(httpCode, false);
    const body = goJsonStringify({
      error: {
        grpc_code: status.code === 0 ? undefined : status.code,
        http_code: httpCode,
        message: status.details === '' ? undefined : status.details,
        http_status: httpStatusText[httpCode] ?? '',
      },
    });
    this.response.end(body);
  }
}
