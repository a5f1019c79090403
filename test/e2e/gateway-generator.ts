// Seeded sequences of JSON gateway requests for the etcd comparison (gateway-vs-etcd.test.ts):
// unary KV, txn and lease calls, keep-alive and watch streams, and mangled versions of all of them
// (truncated, wrong types, bad base64, unknown names, wrong paths and methods). One seed gives one
// sequence; both servers receive it in order, so their stores stay equal step by step.

import { SimRng } from '../../src/sim/rng.js';
import type { RawRequest } from '../support/raw-http.js';

export interface GeneratedCase {
  name: string;
  request: RawRequest;
  stream?: boolean;
  normalise?: (text: string) => string;
}

const keys = ['a', 'a/1', 'a/2', 'b', 'c', 'zz'];
const b64 = (text: string) => Buffer.from(text).toString('base64');

/** etcd's prefix end: the key with its last byte incremented. */
const prefixEnd = (key: string) => key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) + 1);

export const normaliseTimeToLive = (text: string) => text.replace(/"TTL":"\d+"/, '"TTL":"<remaining>"');

class Generator {
  private readonly rng: SimRng;
  private nextLeaseId = 100;
  private readonly leases: number[] = [];

  constructor(
    seed: number,
    private readonly shared: SharedHistory,
  ) {
    this.rng = new SimRng(seed);
    // Sequences of different seeds share the servers: their explicit lease IDs do not overlap.
    this.nextLeaseId = 1000 * (1 + (Math.abs(seed) % 100_000));
  }

  private int(lo: number, hi: number): number {
    return lo + this.rng.nextInt(hi - lo + 1);
  }

  private chance(percent: number): boolean {
    return this.rng.nextInt(100) < percent;
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.rng.nextInt(items.length)] as T;
  }

  private key(): string {
    return this.pick(keys);
  }

  /** An int64 as a JSON number or a decimal string, both of which jsonpb takes. */
  private int64(value: number): number | string {
    return this.chance(50) ? value : String(value);
  }

  /** A field name as written (original) or in lowerCamelCase (jsonpb takes both). */
  private name(field: string): string {
    return this.chance(25) ? field.replace(/_(.)/g, (_, c: string) => c.toUpperCase()) : field;
  }

  private leaseId(): number {
    if (this.leases.length === 0 || this.chance(15)) return this.int(1, 99);
    return this.pick(this.leases);
  }

  private rangeRequest(): Record<string, unknown> {
    const key = this.key();
    const request: Record<string, unknown> = { key: b64(key) };
    if (this.chance(40)) request[this.name('range_end')] = b64(this.chance(80) ? prefixEnd(key) : '\0');
    if (this.chance(30)) request.limit = this.int64(this.int(0, 3));
    if (this.chance(25)) request.revision = this.int64(this.int(0, 40));
    if (this.chance(20)) request[this.name('sort_order')] = this.pick(['NONE', 'ASCEND', 'DESCEND', 2]);
    if (this.chance(20))
      request[this.name('sort_target')] = this.pick(['KEY', 'VERSION', 'CREATE', 'MOD', 'VALUE', 3]);
    if (this.chance(15)) request[this.name('keys_only')] = true;
    if (this.chance(15)) request[this.name('count_only')] = true;
    if (this.chance(20)) request.serializable = this.chance(50);
    if (this.chance(10)) request[this.name('min_mod_revision')] = this.int64(this.int(0, 20));
    if (this.chance(10)) request[this.name('max_create_revision')] = this.int64(this.int(0, 20));
    return request;
  }

  private putRequest(): Record<string, unknown> {
    const value = this.chance(8) ? 'v'.repeat(this.int(1600, 2200)) : `v${this.int(0, 999)}`;
    const request: Record<string, unknown> = { key: b64(this.key()), value: b64(value) };
    if (this.chance(30)) request[this.name('prev_kv')] = true;
    if (this.chance(20)) request.lease = this.int64(this.leaseId());
    if (this.chance(5)) request[this.name('ignore_value')] = true;
    if (this.chance(5)) request[this.name('ignore_lease')] = true;
    return request;
  }

  private deleteRequest(): Record<string, unknown> {
    const key = this.key();
    const request: Record<string, unknown> = { key: b64(key) };
    if (this.chance(40)) request[this.name('range_end')] = b64(prefixEnd(key));
    if (this.chance(40)) request[this.name('prev_kv')] = true;
    return request;
  }

  private requestOp(): Record<string, unknown> {
    switch (this.int(0, 2)) {
      case 0:
        return { [this.name('request_put')]: this.putRequest() };
      case 1:
        return { [this.name('request_range')]: this.rangeRequest() };
      default:
        return { [this.name('request_delete_range')]: this.deleteRequest() };
    }
  }

  private txnRequest(): Record<string, unknown> {
    const compare = Array.from({ length: this.int(0, 2) }, () => {
      const target = this.pick(['VERSION', 'CREATE', 'MOD', 'VALUE', 'LEASE']);
      const field = {
        VERSION: 'version',
        CREATE: 'create_revision',
        MOD: 'mod_revision',
        VALUE: 'value',
        LEASE: 'lease',
      }[target] as string;
      const value = target === 'VALUE' ? b64(`v${this.int(0, 999)}`) : this.int64(this.int(0, 10));
      return {
        key: b64(this.key()),
        target,
        result: this.pick(['EQUAL', 'GREATER', 'LESS', 'NOT_EQUAL']),
        [this.name(field)]: value,
      };
    });
    const ops = () => Array.from({ length: this.int(0, 2) }, () => this.requestOp());
    return { compare, success: ops(), failure: ops() };
  }

  private unary(): GeneratedCase {
    switch (this.int(0, 9)) {
      case 0:
      case 1:
        return this.json('put', '/v3/kv/put', this.putRequest());
      case 2:
      case 3:
        return this.json('range', '/v3/kv/range', this.rangeRequest());
      case 4:
        return this.json('deleterange', '/v3/kv/deleterange', this.deleteRequest());
      case 5:
        return this.json('txn', '/v3/kv/txn', this.txnRequest());
      case 6: {
        const reuse = this.leases.length > 0 && this.chance(15);
        const id = reuse ? this.pick(this.leases) : this.nextLeaseId++;
        if (!reuse) this.leases.push(id);
        return this.json('lease grant', '/v3/lease/grant', {
          TTL: this.int64(this.int(600, 900)),
          ID: this.int64(id),
        });
      }
      case 7: {
        const id = this.leaseId();
        const index = this.leases.indexOf(id);
        if (index >= 0 && this.chance(30)) {
          this.leases.splice(index, 1);
          return this.json('lease revoke', '/v3/lease/revoke', { ID: this.int64(id) });
        }
        return {
          ...this.json('lease timetolive', '/v3/lease/timetolive', {
            ID: this.int64(id),
            keys: this.chance(50),
          }),
          normalise: normaliseTimeToLive,
        };
      }
      case 8:
        return this.json('lease leases', '/v3/lease/leases', {});
      default: {
        const revision = this.int(1, 12);
        this.shared.compactRevisions.add(revision);
        return this.json('compaction', '/v3/kv/compaction', { revision: this.int64(revision) });
      }
    }
  }

  private json(name: string, path: string, body: unknown): GeneratedCase {
    return {
      name,
      request: {
        method: 'POST',
        path: this.chance(5) ? path.replace('/v3/', '/v3beta/') : path,
        body: JSON.stringify(body),
      },
    };
  }

  /** A body of several JSON messages: one string, or chunks cut at random places. */
  private streamBody(messages: string[]): string | string[] {
    const text = messages.join(this.pick(['', '\n', ' ']));
    if (this.chance(50)) return text;
    const parts: string[] = [];
    let at = 0;
    while (at < text.length) {
      const next = Math.min(text.length, at + this.int(1, 40));
      parts.push(text.slice(at, next));
      at = next;
    }
    return parts;
  }

  private keepAlive(): GeneratedCase {
    const messages = Array.from({ length: this.int(1, 3) }, () =>
      JSON.stringify({ ID: this.int64(this.leaseId()) }),
    );
    return {
      name: 'keepalive',
      request: { method: 'POST', path: '/v3/lease/keepalive', body: this.streamBody(messages) },
    };
  }

  private watch(): GeneratedCase {
    const messages: string[] = [];
    for (let i = this.int(1, 2); i > 0; i--) {
      const key = this.key();
      const create: Record<string, unknown> = { key: b64(key) };
      if (this.chance(50)) create[this.name('range_end')] = b64(prefixEnd(key));
      if (this.chance(70)) {
        let start = this.int(1, 40);
        while (this.shared.compactRevisions.has(start)) start++;
        create[this.name('start_revision')] = this.int64(start);
      }
      if (this.chance(30)) create[this.name('prev_kv')] = true;
      if (this.chance(20)) create.filters = [this.pick(['NOPUT', 'NODELETE', 0, 1])];
      messages.push(JSON.stringify({ [this.name('create_request')]: create }));
    }
    if (this.chance(25))
      messages.push(
        JSON.stringify({ [this.name('cancel_request')]: { [this.name('watch_id')]: this.int(0, 2) } }),
      );
    if (this.chance(15)) messages.push(JSON.stringify({ [this.name('progress_request')]: {} }));
    return {
      name: 'watch',
      request: { method: 'POST', path: '/v3/watch', body: this.streamBody(messages) },
      stream: true,
    };
  }

  /** A valid request made invalid in one of the ways a client gets it wrong. */
  private mangled(): GeneratedCase {
    const base = this.chance(70) ? this.unary() : this.chance(50) ? this.keepAlive() : this.watch();
    const text = Array.isArray(base.request.body) ? base.request.body.join('') : base.request.body;
    const mangle = (body: string): RawRequest => ({ ...base.request, body });
    switch (this.int(0, 7)) {
      case 0:
        return {
          ...base,
          name: `${base.name}, truncated`,
          request: mangle(text.slice(0, this.int(0, Math.max(0, text.length - 1)))),
        };
      case 1:
        return {
          ...base,
          name: `${base.name}, bytes as a number`,
          request: mangle(text.replace(/"key":"[^"]*"/, '"key":12')),
        };
      case 2:
        return {
          ...base,
          name: `${base.name}, bad base64`,
          request: mangle(
            text.replace(/"key":"[^"]*"/, `"key":"${this.pick(['YQ', 'Y', '!!', 'YQ=', 'YQ==YQ=='])}"`),
          ),
        };
      case 3:
        return {
          ...base,
          name: `${base.name}, int64 as a fraction`,
          request: mangle(
            text.replace(/("(?:ID|TTL|limit|revision|lease|start_revision)"):("?)\d+\2/, '$1:1.5'),
          ),
        };
      case 4:
        return {
          ...base,
          name: `${base.name}, garbage`,
          request: mangle(
            this.pick([
              'x',
              '{"key":tru}',
              '{,}',
              '{"a" 1}',
              '"str"',
              '[1]',
              '{"key":"\\x"}',
              text.replace('{', '{{'),
            ]),
          ),
        };
      case 5:
        return {
          ...base,
          name: `${base.name}, unknown enum`,
          request: mangle(
            text.includes('"target"')
              ? text.replace(/"target":"[A-Z]+"/, '"target":"NOPE"')
              : text.replace('{', '{"sort_order":"UP",'),
          ),
        };
      case 6:
        return {
          ...base,
          name: `${base.name}, wrong path`,
          request: {
            ...base.request,
            path: this.pick([
              '/v3/kv/rnage',
              '/v3/kv/range/',
              '/v3alpha/kv/range',
              '/v3/lease',
              '/v2/keys/a',
            ]),
          },
        };
      default:
        return {
          ...base,
          name: `${base.name}, GET`,
          request: { ...base.request, method: 'GET', body: '' },
          stream: false,
        };
    }
  }

  next(): GeneratedCase {
    const roll = this.int(0, 99);
    if (roll < 55) return this.unary();
    if (roll < 67) return this.keepAlive();
    if (roll < 77) return this.watch();
    return this.mangled();
  }
}

/** What the sequences sent to the same servers so far have done that later ones must know. */
export interface SharedHistory {
  /**
   * Revisions compacted at. A watch never starts at one: there etcd 3.4.23 drops a delete made at
   * the compact revision, which Concord keeps on purpose (the fix of etcd-io/etcd#18089, in later
   * 3.4 and 3.5 releases).
   */
  compactRevisions: Set<number>;
}

/** `count` requests from `seed`, following the sequences `shared` recorded. */
export function generateCases(seed: number, count: number, shared: SharedHistory): GeneratedCase[] {
  const generator = new Generator(seed, shared);
  return Array.from({ length: count }, () => generator.next());
}
