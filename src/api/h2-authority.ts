// Makes gRPC calls whose :authority carries a URL scheme acceptable to Node's HTTP/2 server.
//
// Why: etcdctl dials some endpoints (endpoint status/hashkv, defrag, move-leader, snapshot) with
// the target `passthrough:///http://host:port`, so grpc-go sends `:authority: http://host:port`.
// Go's server accepts that; nghttp2 (inside Node) resets the stream with PROTOCOL_ERROR because
// '/' is not an authority character. etcd users write http:// endpoints by habit, so we repair
// the header before nghttp2 sees it.
//
// How: the first HEADERS block of each HTTP/2 connection is decoded. When its authority is
// fine (the common case: every other client), the untouched socket goes to grpc-js and this
// module costs nothing more. Otherwise the connection's client-to-server bytes run through a
// rewriter for its whole life: every header block is decoded with HPACK (mirroring the client's
// dynamic table) and re-encoded as plain literals that never enter the server's table, with the
// scheme stripped from :authority. Other frames pass through unchanged.

import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { HUFFMAN_CODE_BITS, HUFFMAN_CODES, STATIC_TABLE } from './hpack-tables.js';

const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** The server's SETTINGS_MAX_FRAME_SIZE (Node's default); re-encoded blocks are split to fit. */
const FRAME_PAYLOAD_BYTES_MAX = 16_384;
/** SETTINGS_HEADER_TABLE_SIZE the client's encoder may use (Node's default advertises 4096). */
const HEADER_TABLE_BYTES_MAX = 4096;
/** Bound on a header block being collected across CONTINUATION frames. */
const HEADER_BLOCK_BYTES_MAX = 1024 * 1024;

export class HpackError extends Error {
  readonly code = 'HPACK_ERROR';
}

// ---- Huffman ------------------------------------------------------------------------------

/** code → symbol, one map per code length (5..30 bits). */
const huffmanByLength: Array<Map<number, number>> = (() => {
  const maps: Array<Map<number, number>> = [];
  for (let symbol = 0; symbol < HUFFMAN_CODES.length; symbol++) {
    const bits = HUFFMAN_CODE_BITS[symbol]!;
    maps[bits] ??= new Map();
    maps[bits]!.set(HUFFMAN_CODES[symbol]!, symbol);
  }
  return maps;
})();

export function huffmanDecode(input: Uint8Array): Buffer {
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (const byte of input) {
    for (let i = 7; i >= 0; i--) {
      code = code * 2 + ((byte >> i) & 1);
      bits++;
      const symbol = huffmanByLength[bits]?.get(code);
      if (symbol === undefined) {
        if (bits > 30) throw new HpackError('invalid Huffman code');
        continue;
      }
      if (symbol === 256) throw new HpackError('EOS symbol inside a Huffman string');
      out.push(symbol);
      code = 0;
      bits = 0;
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (bits > 7 || code !== 2 ** bits - 1) throw new HpackError('invalid Huffman padding');
  return Buffer.from(out);
}

// ---- HPACK decoding -------------------------------------------------------------------------

export type HeaderField = [name: string, value: string];

export class HpackDecoder {
  private readonly dynamic: HeaderField[] = [];
  private dynamicBytes = 0;
  private dynamicBytesMax = HEADER_TABLE_BYTES_MAX;

  decode(block: Buffer): HeaderField[] {
    const fields: HeaderField[] = [];
    let at = 0;
    const integer = (prefixBits: number): number => {
      const mask = 2 ** prefixBits - 1;
      let value = block[at++]! & mask;
      if (value < mask) return value;
      let shift = 1;
      for (;;) {
        if (at >= block.length) throw new HpackError('truncated integer');
        const byte = block[at++]!;
        value += (byte & 0x7f) * shift;
        if (byte < 0x80) return value;
        shift *= 128;
        if (shift > 2 ** 28) throw new HpackError('integer too large');
      }
    };
    const string = (): string => {
      if (at >= block.length) throw new HpackError('truncated string');
      const huffman = (block[at]! & 0x80) !== 0;
      const length = integer(7);
      if (at + length > block.length) throw new HpackError('truncated string');
      const raw = block.subarray(at, at + length);
      at += length;
      return (huffman ? huffmanDecode(raw) : raw).toString('latin1');
    };
    while (at < block.length) {
      const first = block[at]!;
      if (first & 0x80) {
        fields.push(this.lookup(integer(7)));
      } else if ((first & 0xc0) === 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : this.lookup(index)[0];
        const field: HeaderField = [name, string()];
        fields.push(field);
        this.insert(field);
      } else if ((first & 0xe0) === 0x20) {
        const size = integer(5);
        if (size > HEADER_TABLE_BYTES_MAX) throw new HpackError('table size update above the limit');
        this.dynamicBytesMax = size;
        this.evict();
      } else {
        const index = integer(4);
        const name = index === 0 ? string() : this.lookup(index)[0];
        fields.push([name, string()]);
      }
    }
    return fields;
  }

  private lookup(index: number): HeaderField {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) {
      const [name, value] = STATIC_TABLE[index - 1]!;
      return [name, value];
    }
    const field = this.dynamic[index - STATIC_TABLE.length - 1];
    if (field === undefined) throw new HpackError(`index ${index} outside the tables`);
    return field;
  }

  private insert(field: HeaderField): void {
    this.dynamic.unshift(field);
    this.dynamicBytes += field[0].length + field[1].length + 32;
    this.evict();
  }

  private evict(): void {
    while (this.dynamicBytes > this.dynamicBytesMax && this.dynamic.length > 0) {
      const dropped = this.dynamic.pop()!;
      this.dynamicBytes -= dropped[0].length + dropped[1].length + 32;
    }
  }
}

/** Literal header fields without indexing, plain strings: they never touch the decoder's table. */
export function encodeLiterals(fields: readonly HeaderField[]): Buffer {
  const parts: Buffer[] = [];
  const integer = (value: number, prefixBits: number, firstByteBits: number) => {
    const mask = 2 ** prefixBits - 1;
    if (value < mask) return parts.push(Buffer.from([firstByteBits | value]));
    const bytes = [firstByteBits | mask];
    value -= mask;
    while (value >= 128) {
      bytes.push((value % 128) | 0x80);
      value = Math.floor(value / 128);
    }
    bytes.push(value);
    parts.push(Buffer.from(bytes));
  };
  const string = (text: string) => {
    const bytes = Buffer.from(text, 'latin1');
    integer(bytes.length, 7, 0);
    parts.push(bytes);
  };
  for (const [name, value] of fields) {
    parts.push(Buffer.from([0]));
    string(name);
    string(value);
  }
  return Buffer.concat(parts);
}

export function fixAuthority(value: string): string {
  const scheme = value.indexOf('://');
  return scheme >= 0 ? value.slice(scheme + 3).replace(/\/+$/, '') : value;
}

// ---- frame rewriting -----------------------------------------------------------------------

interface PendingBlock {
  streamId: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fragments: Buffer[];
  bytes: number;
  /** The block's frames as received, forwarded untouched when no repair is needed. */
  rawFrames: Buffer[];
}

/**
 * Rewrites the client → server byte stream of one HTTP/2 connection (preface included). Feed it
 * chunks in order; it returns the bytes to hand to the server.
 */
export class AuthorityRewriter {
  private buffered: Buffer = Buffer.alloc(0);
  private prefaceDone = false;
  private pending: PendingBlock | undefined;
  private readonly decoder = new HpackDecoder();
  /** Set once the first header block is seen: whether its authority needed repair. */
  firstAuthorityNeedsFix: boolean | undefined;

  push(chunk: Buffer): Buffer {
    // A connection whose first authority was fine keeps it: stop parsing once the frame in
    // progress is out (frames are forwarded whole, so the boundary is known).
    if (this.firstAuthorityNeedsFix === false && this.buffered.length === 0 && this.pending === undefined) {
      return chunk;
    }
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const out: Buffer[] = [];
    if (!this.prefaceDone) {
      if (this.buffered.length < PREFACE_BYTES) return Buffer.alloc(0);
      out.push(this.buffered.subarray(0, PREFACE_BYTES));
      this.buffered = this.buffered.subarray(PREFACE_BYTES);
      this.prefaceDone = true;
    }
    while (this.buffered.length >= FRAME_HEADER_BYTES) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < FRAME_HEADER_BYTES + length) break;
      const frame = this.buffered.subarray(0, FRAME_HEADER_BYTES + length);
      this.buffered = this.buffered.subarray(FRAME_HEADER_BYTES + length);
      out.push(this.frame(frame));
    }
    return Buffer.concat(out);
  }

  private frame(frame: Buffer): Buffer {
    // Decided to pass through: later frames must reach the server exactly as the client's
    // encoder produced them (their indexes refer to table entries the server already holds).
    if (this.firstAuthorityNeedsFix === false) return frame;
    const type = frame[3]!;
    const flags = frame[4]!;
    const streamId = frame.readUInt32BE(5) & 0x7fff_ffff;
    let payload = frame.subarray(FRAME_HEADER_BYTES);
    if (type === FRAME_HEADERS) {
      if (flags & FLAG_PADDED) {
        const padBytes = payload[0]!;
        payload = payload.subarray(1, payload.length - padBytes);
      }
      let priority: Buffer | undefined;
      if (flags & FLAG_PRIORITY) {
        priority = payload.subarray(0, 5);
        payload = payload.subarray(5);
      }
      this.pending = {
        streamId,
        endStream: (flags & FLAG_END_STREAM) !== 0,
        priority,
        fragments: [],
        bytes: 0,
        rawFrames: [frame],
      };
      return this.collect(payload, flags);
    }
    if (type === FRAME_CONTINUATION && this.pending !== undefined && this.pending.streamId === streamId) {
      this.pending.rawFrames.push(frame);
      return this.collect(payload, flags);
    }
    return frame;
  }

  private collect(fragment: Buffer, flags: number): Buffer {
    const pending = this.pending!;
    pending.fragments.push(fragment);
    pending.bytes += fragment.length;
    if (pending.bytes > HEADER_BLOCK_BYTES_MAX) throw new HpackError('header block too large');
    if ((flags & FLAG_END_HEADERS) === 0) return Buffer.alloc(0);
    this.pending = undefined;
    const fields = this.decoder.decode(Buffer.concat(pending.fragments));
    for (const field of fields) {
      if (field[0] !== ':authority') continue;
      const fixed = fixAuthority(field[1]);
      this.firstAuthorityNeedsFix ??= fixed !== field[1];
      field[1] = fixed;
    }
    this.firstAuthorityNeedsFix ??= false;
    // A fine first block goes out as sent: re-encoding it as literals would leave the server's
    // HPACK table without the entries the client's encoder just indexed, and every later block
    // that refers to them would fail to decode (COMPRESSION_ERROR).
    if (this.firstAuthorityNeedsFix === false) return Buffer.concat(pending.rawFrames);
    return headerFrames(pending, encodeLiterals(fields));
  }
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return header;
}

function headerFrames(block: PendingBlock, encoded: Buffer): Buffer {
  const parts: Buffer[] = [];
  const prefix = block.priority ?? Buffer.alloc(0);
  const firstRoom = FRAME_PAYLOAD_BYTES_MAX - prefix.length;
  const first = encoded.subarray(0, firstRoom);
  let rest = encoded.subarray(first.length);
  let flags = (block.endStream ? FLAG_END_STREAM : 0) | (block.priority ? FLAG_PRIORITY : 0);
  if (rest.length === 0) flags |= FLAG_END_HEADERS;
  parts.push(frameHeader(prefix.length + first.length, FRAME_HEADERS, flags, block.streamId), prefix, first);
  while (rest.length > 0) {
    const piece = rest.subarray(0, FRAME_PAYLOAD_BYTES_MAX);
    rest = rest.subarray(piece.length);
    const last = rest.length === 0 ? FLAG_END_HEADERS : 0;
    parts.push(frameHeader(piece.length, FRAME_CONTINUATION, last, block.streamId), piece);
  }
  return Buffer.concat(parts);
}

/** Client bytes go through the rewriter; server bytes go straight to the socket. */
class RewritingDuplex extends Duplex {
  constructor(
    private readonly socket: Socket,
    private readonly rewriter: AuthorityRewriter,
    firstBytes: Buffer,
  ) {
    super();
    if (firstBytes.length > 0) this.push(firstBytes);
    socket.on('data', (chunk: Buffer) => {
      let rewritten: Buffer;
      try {
        rewritten = this.rewriter.push(chunk);
      } catch (error) {
        this.destroy(error as Error);
        socket.destroy();
        return;
      }
      if (rewritten.length > 0 && !this.push(rewritten)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('close', () => this.destroy());
    socket.on('error', (error) => this.destroy(error));
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}

/**
 * Wraps an HTTP/2 connection so its header blocks can be repaired. It cannot wait for the first
 * request to decide: grpc-go sends nothing before the server's SETTINGS. After the first header
 * block, a connection that needed no repair is passed through chunk by chunk without parsing.
 */
export function wrapHttp2Connection(socket: Socket): Duplex {
  const wrapped = new RewritingDuplex(socket, new AuthorityRewriter(), Buffer.alloc(0));
  socket.resume();
  return wrapped;
}
