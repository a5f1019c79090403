// A raw HTTP/1.1 client for comparing two servers' answers byte for byte: it writes the request
// exactly as given (Content-Length or chunked, one chunk per part) and keeps every byte of the
// answer, then parses the framing itself, so a malformed chunk, a missing terminator or a stray
// header shows up instead of being smoothed over by a client library.

import { connect } from 'node:net';

export interface RawRequest {
  method: string;
  path: string;
  /** Extra request headers, written in this order after Host. */
  headers?: Array<[string, string]>;
  /**
   * One string: sent with Content-Length. An array: sent chunked, one chunk per element, then
   * the terminating zero-length chunk (the request body ends).
   */
  body: string | string[];
}

export interface RawReadOptions {
  /** Stop reading this long after the last byte arrived (streams that stay open). */
  quietMs: number;
  /** Stop reading after this long in any case. */
  totalMs: number;
}

/** Sends one request on a fresh connection and returns every byte read until the answer ended. */
export function rawExchange(url: string, request: RawRequest, read: RawReadOptions): Promise<Buffer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const received: Buffer[] = [];
    let quietTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(quietTimer);
      clearTimeout(totalTimer);
      socket.destroy();
      resolve(Buffer.concat(received));
    };
    const totalTimer = setTimeout(finish, read.totalMs);
    socket.on('error', (error) => {
      clearTimeout(quietTimer);
      clearTimeout(totalTimer);
      socket.destroy();
      if (received.length > 0) resolve(Buffer.concat(received));
      else reject(error);
    });
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      const all = Buffer.concat(received);
      if (parseRawResponse(all).complete) return finish();
      clearTimeout(quietTimer);
      quietTimer = setTimeout(finish, read.quietMs);
    });
    socket.on('end', finish);
    let head = `${request.method} ${request.path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n`;
    for (const [name, value] of request.headers ?? []) head += `${name}: ${value}\r\n`;
    if (typeof request.body === 'string') {
      const body = Buffer.from(request.body);
      socket.write(`${head}Content-Length: ${body.length}\r\n\r\n`);
      socket.write(body);
    } else {
      let text = `${head}Transfer-Encoding: chunked\r\n\r\n`;
      for (const part of request.body) {
        const bytes = Buffer.from(part);
        if (bytes.length > 0) text += `${bytes.length.toString(16)}\r\n${part}\r\n`;
      }
      socket.write(`${text}0\r\n\r\n`);
    }
  });
}

export interface RawResponse {
  statusLine: string;
  /** Header lines in the order received, exactly as sent (name casing kept). */
  headers: Array<[string, string]>;
  framing: 'content-length' | 'chunked' | 'none';
  /** The body pieces: one per chunk for chunked framing, the whole body otherwise. */
  chunks: string[];
  trailers: Array<[string, string]>;
  /** The answer ended: the whole Content-Length arrived, or the zero chunk and its trailers. */
  complete: boolean;
  /** Framing errors (bad chunk size, chunk not followed by CRLF, bytes after the end). */
  errors: string[];
}

function parseHeaderLines(text: string): Array<[string, string]> {
  if (text === '') return [];
  return text.split('\r\n').map((line) => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()] as [string, string];
  });
}

/** Parses one HTTP/1.1 response from raw bytes, as far as they go. */
export function parseRawResponse(bytes: Buffer): RawResponse {
  const text = bytes.toString('latin1');
  const response: RawResponse = {
    statusLine: '',
    headers: [],
    framing: 'none',
    chunks: [],
    trailers: [],
    complete: false,
    errors: [],
  };
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return response;
  const [statusLine = '', ...headerLines] = text.slice(0, headEnd).split('\r\n');
  response.statusLine = statusLine;
  response.headers = parseHeaderLines(headerLines.join('\r\n'));
  const header = (name: string) =>
    response.headers.find(([key]) => key.toLowerCase() === name.toLowerCase())?.[1];
  let at = headEnd + 4;
  const utf8 = (start: number, end: number) => bytes.subarray(start, end).toString('utf8');
  const length = header('content-length');
  if (header('transfer-encoding') === 'chunked') {
    response.framing = 'chunked';
    for (;;) {
      const lineEnd = text.indexOf('\r\n', at);
      if (lineEnd < 0) return response;
      const sizeText = text.slice(at, lineEnd);
      if (!/^[0-9a-f]+$/.test(sizeText)) {
        response.errors.push(`bad chunk size line ${JSON.stringify(sizeText)}`);
        return response;
      }
      const size = Number.parseInt(sizeText, 16);
      if (size === 0) {
        const trailerEnd = text.indexOf('\r\n\r\n', lineEnd);
        const bare = text.startsWith('\r\n', lineEnd + 2);
        if (bare) at = lineEnd + 4;
        else if (trailerEnd >= 0) {
          response.trailers = parseHeaderLines(text.slice(lineEnd + 2, trailerEnd));
          at = trailerEnd + 4;
        } else return response;
        response.complete = true;
        break;
      }
      const dataStart = lineEnd + 2;
      if (text.length < dataStart + size + 2) return response;
      response.chunks.push(utf8(dataStart, dataStart + size));
      if (text.slice(dataStart + size, dataStart + size + 2) !== '\r\n') {
        response.errors.push('chunk data not followed by CRLF');
        return response;
      }
      at = dataStart + size + 2;
    }
  } else if (length !== undefined) {
    response.framing = 'content-length';
    const size = Number(length);
    if (text.length < at + size) {
      response.chunks.push(utf8(at, text.length));
      return response;
    }
    response.chunks.push(utf8(at, at + size));
    at += size;
    response.complete = true;
  } else {
    response.chunks.push(utf8(at, text.length));
    at = text.length;
  }
  if (at < text.length) response.errors.push(`${text.length - at} bytes after the end of the answer`);
  return response;
}
