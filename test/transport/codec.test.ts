import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  message,
  type Snapshot,
} from '../../src/raft/types.js';
import {
  CODEC_VERSION,
  decodeBatch,
  encodeBatch,
  type GroupMessage,
  groupMessageBytes,
  messageBytes,
} from '../../src/transport/codec.js';
import { TransportError } from '../../src/transport/errors.js';
import {
  encodeFrame,
  encodeMessageFrames,
  FRAME_OVERHEAD_BYTES,
  FrameDecoder,
  FrameType,
} from '../../src/transport/frame.js';

const safeInt = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.nat(),
  fc.maxSafeNat(),
);
const bytes = (maxLength: number) => fc.uint8Array({ maxLength });
const ids = fc.array(fc.maxSafeNat(), { maxLength: 6 });

const entryArb: fc.Arbitrary<Entry> = fc.record({
  term: safeInt,
  index: safeInt,
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange),
  data: fc.oneof(bytes(64), bytes(4096)),
});

const confStateArb: fc.Arbitrary<ConfState> = fc.record({
  voters: ids,
  learners: ids,
  votersOutgoing: ids,
  learnersNext: ids,
  autoLeave: fc.boolean(),
});

const snapshotArb: fc.Arbitrary<Snapshot> = fc.record({
  metadata: fc.record({ index: safeInt, term: safeInt, confState: confStateArb }),
  data: bytes(2048),
});

const messageArb: fc.Arbitrary<Message> = fc
  .record({
    type: fc.integer({ min: 0, max: MessageType.CheckQuorum }),
    to: safeInt,
    from: safeInt,
    term: safeInt,
    logTerm: safeInt,
    index: safeInt,
    entries: fc.array(entryArb, { maxLength: 8 }),
    commit: safeInt,
    reject: fc.boolean(),
    rejectHint: safeInt,
    context: bytes(32),
    snapshot: fc.option(snapshotArb, { nil: undefined }),
  })
  .map((m) => {
    const { snapshot, ...rest } = m;
    return snapshot === undefined ? (rest as Message) : ({ ...rest, snapshot } as Message);
  });

const groupMessageArb: fc.Arbitrary<GroupMessage> = fc.record({
  group: fc.oneof(fc.constantFrom(0, 1, 127, 128), safeInt),
  message: messageArb,
});

/** Messages of group 1, as a single-group caller sends them. */
function ofGroup1(messages: Message[]): GroupMessage[] {
  return messages.map((m) => ({ group: 1, message: m }));
}

/** Decoded byte fields are plain Uint8Array views; compare on content and type. */
function normalize(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

describe('codec', () => {
  it('round-trips any batch of messages of any groups exactly, group ids included', () => {
    fc.assert(
      fc.property(fc.array(groupMessageArb, { maxLength: 12 }), (items) => {
        const decoded = decodeBatch(encodeBatch(items));
        assert.deepEqual(normalize(decoded), normalize(items));
        decoded.forEach((item, i) => {
          assert.equal('snapshot' in item.message, items[i]!.message.snapshot !== undefined);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('sizes each message exactly (one allocation per batch, no slack)', () => {
    fc.assert(
      fc.property(fc.array(groupMessageArb, { maxLength: 5 }), (items) => {
        const total = items.reduce((sum, item) => sum + groupMessageBytes(item), 0);
        // version byte + count varint (< 128 messages → 1 byte)
        assert.equal(encodeBatch(items).length, total + 2);
      }),
    );
  });

  it('costs one byte per message for a group id below 128', () => {
    const m = message({ type: MessageType.Heartbeat, to: 2, from: 1 });
    assert.equal(groupMessageBytes({ group: 0, message: m }), messageBytes(m) + 1);
    assert.equal(groupMessageBytes({ group: 127, message: m }), messageBytes(m) + 1);
    assert.equal(groupMessageBytes({ group: 128, message: m }), messageBytes(m) + 2);
  });

  it('round-trips a large entry (5 MiB) and max safe integers', () => {
    const data = new Uint8Array(5 << 20).map((_, i) => i * 31);
    const m = message({
      type: MessageType.Append,
      to: Number.MAX_SAFE_INTEGER,
      from: 1,
      term: Number.MAX_SAFE_INTEGER,
      index: Number.MAX_SAFE_INTEGER - 1,
      entries: [{ term: 7, index: Number.MAX_SAFE_INTEGER, type: EntryType.Normal, data }],
    });
    const [decoded] = decodeBatch(encodeBatch([{ group: Number.MAX_SAFE_INTEGER, message: m }]));
    assert.equal(decoded!.group, Number.MAX_SAFE_INTEGER);
    assert.equal(decoded!.message.to, Number.MAX_SAFE_INTEGER);
    assert.equal(decoded!.message.entries[0]!.index, Number.MAX_SAFE_INTEGER);
    assert.ok(Buffer.from(decoded!.message.entries[0]!.data).equals(Buffer.from(data)));
  });

  it('refuses to encode integers that are not non-negative safe integers', () => {
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(
        () => encodeBatch(ofGroup1([message({ type: MessageType.Heartbeat, term: bad })])),
        (e: unknown) => e instanceof TransportError && e.code === 'CODEC_INVALID',
      );
      assert.throws(
        () => encodeBatch([{ group: bad, message: message({ type: MessageType.Heartbeat }) }]),
        (e: unknown) => e instanceof TransportError && e.code === 'CODEC_INVALID',
      );
    }
  });

  it('rejects an unknown codec version', () => {
    const payload = encodeBatch(ofGroup1([message({ type: MessageType.Heartbeat, to: 2, from: 1 })]));
    payload[0] = CODEC_VERSION + 1;
    assert.throws(
      () => decodeBatch(payload),
      (e: unknown) => e instanceof TransportError && e.code === 'CODEC_VERSION',
    );
  });

  it('never decodes a truncated batch into messages', () => {
    fc.assert(
      fc.property(fc.array(groupMessageArb, { minLength: 1, maxLength: 4 }), fc.nat(), (items, cut) => {
        const payload = encodeBatch(items);
        const at = cut % payload.length;
        assert.throws(
          () => decodeBatch(payload.subarray(0, at)),
          (e: unknown) => e instanceof TransportError,
        );
      }),
      { numRuns: 200 },
    );
  });

  it('rejects garbage with a typed error, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (garbage) => {
        try {
          decodeBatch(garbage);
        } catch (e) {
          assert.ok(e instanceof TransportError, `unexpected ${String(e)}`);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('frames', () => {
  function collect(frameBytesMax: number, chunks: Buffer[]): Array<{ type: FrameType; payload: Buffer }> {
    const frames: Array<{ type: FrameType; payload: Buffer }> = [];
    const decoder = new FrameDecoder(frameBytesMax, (type, payload) =>
      frames.push({ type, payload: Buffer.from(payload) }),
    );
    for (const chunk of chunks) decoder.push(chunk);
    return frames;
  }

  it('reassembles frames split at every possible byte boundary', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }),
        (payloads, cuts) => {
          const stream = Buffer.concat(payloads.map((p) => encodeFrame(FrameType.Messages, p)));
          const chunks: Buffer[] = [];
          let at = 0;
          for (let i = 0; at < stream.length; i++) {
            const size = cuts[i % cuts.length]!;
            chunks.push(stream.subarray(at, at + size));
            at += size;
          }
          const frames = collect(1 << 20, chunks);
          assert.deepEqual(
            frames.map((f) => Array.from(f.payload)),
            payloads.map((p) => Array.from(p)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('detects any single flipped bit outside the CRC field and delivers nothing from it', () => {
    const frame = encodeFrame(FrameType.Messages, Buffer.from('heartbeat batch payload'));
    // A grown length swallows the following frames, so enough traffic must follow for the CRC
    // (or the frameBytesMax bound) to catch it, as on a live connection.
    const following = encodeFrame(FrameType.Messages, Buffer.alloc(600_000));
    for (let bit = 0; bit < (frame.length - 4) * 8; bit++) {
      const bad = Buffer.from(frame);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const delivered: Buffer[] = [];
      const decoder = new FrameDecoder(1 << 20, (_type, payload) => delivered.push(payload));
      assert.throws(
        () => {
          decoder.push(bad);
          decoder.push(following);
        },
        (e: unknown) => e instanceof TransportError,
        `bit ${bit} not detected`,
      );
      assert.equal(delivered.length, 0, `bit ${bit}: a frame was delivered`);
    }
  });

  it('rejects an oversize length before allocating the body', () => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(0xffff_fff0, 0);
    header[4] = FrameType.Messages;
    assert.throws(
      () => collect(1 << 20, [header]),
      (e: unknown) => e instanceof TransportError && e.code === 'FRAME_TOO_LARGE',
    );
  });

  it('splits one flush into several frames within frameBytesMax, all in one buffer', () => {
    const messages = Array.from({ length: 50 }, (_, i) =>
      message({
        type: MessageType.Append,
        to: 2,
        from: 1,
        index: i,
        entries: [{ term: 1, index: i + 1, type: EntryType.Normal, data: new Uint8Array(1000).fill(i) }],
      }),
    );
    const items = messages.map((m, i) => ({ group: i % 3, message: m }));
    const sizes = items.map(groupMessageBytes);
    const frameBytesMax = 8 * 1024;
    const buf = encodeMessageFrames(items, sizes, frameBytesMax);
    const frames = collect(frameBytesMax, [buf]);
    assert.ok(frames.length >= 7, `expected several frames, got ${frames.length}`);
    for (const f of frames) assert.ok(f.payload.length <= frameBytesMax);
    const decoded = frames.flatMap((f) => decodeBatch(f.payload));
    assert.deepEqual(
      decoded.map(({ group, message: m }) => [group, m.index]),
      items.map(({ group, message: m }) => [group, m.index]),
    );
    assert.equal(
      buf.length,
      frames.reduce((sum, f) => sum + f.payload.length + FRAME_OVERHEAD_BYTES, 0),
    );
  });

  it('refuses a single message larger than a frame', () => {
    const big = message({ type: MessageType.Append, context: new Uint8Array(5000) });
    assert.throws(
      () => encodeMessageFrames(ofGroup1([big]), [groupMessageBytes({ group: 1, message: big })], 4096),
      (e: unknown) => e instanceof TransportError && e.code === 'MESSAGE_TOO_LARGE',
    );
  });
});
