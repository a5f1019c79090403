// Shared generators and helpers of the sharding tests.
import fc from 'fast-check';

/** Latin-1 text as bytes, so "\xff" is the byte 0xff. */
export const b = (text: string): Uint8Array => Buffer.from(text, 'latin1');

/** Bytes as Latin-1 text (undefined stays undefined), for readable assertions. */
export const text = (bytes: Uint8Array | undefined): string | undefined =>
  bytes === undefined ? undefined : Buffer.from(bytes).toString('latin1');

/** Keys over a small alphabet rich in braces, so tags, empty tags and nested braces all occur. */
export const braceKeyArb: fc.Arbitrary<Uint8Array> = fc
  .array(fc.constantFrom(0x00, 0x61, 0x62, 0x7b, 0x7d, 0x7e, 0xff), { minLength: 0, maxLength: 7 })
  .map((bytes) => Uint8Array.from(bytes));

export function concatBytes(a: Uint8Array, c: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + c.length);
  out.set(a);
  out.set(c, a.length);
  return out;
}
