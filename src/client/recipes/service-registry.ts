// Service discovery: an instance registers `<prefix>/<service>/<instance id>` bound to a lease it
// keeps alive, so a crashed instance disappears after its TTL. Clients list the instances or
// follow them with a callback.

import type { Client } from '../client.js';
import type { LeaseKeepAlive } from '../lease.js';
import { ConfigWatch, type ConfigWatchOptions } from './config-watch.js';

export interface ServiceInstance {
  id: string;
  value: string;
}

export interface Registration {
  readonly key: string;
  readonly lease: LeaseKeepAlive;
  /** Removes the instance at once (revokes its lease). */
  deregister(): Promise<void>;
}

function toInstances(config: ReadonlyMap<string, string>): ServiceInstance[] {
  return [...config.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([id, value]) => ({ id, value }));
}

export class ServiceRegistry {
  constructor(
    private readonly client: Client,
    readonly prefix = 'services',
  ) {}

  private servicePrefix(service: string): string {
    if (service.includes('/')) throw new RangeError('a service name cannot contain "/"');
    return `${this.prefix}/${service}/`;
  }

  async register(
    service: string,
    instanceId: string,
    value: string,
    options: { ttlSeconds?: number; onLoss?: () => void } = {},
  ): Promise<Registration> {
    const key = `${this.servicePrefix(service)}${instanceId}`;
    const lease = await this.client.lease(options.ttlSeconds ?? 10, { onLoss: options.onLoss });
    try {
      await this.client.put(key, value, { lease: lease.id });
    } catch (error) {
      await lease.revoke().catch(() => undefined);
      throw error;
    }
    return { key, lease, deregister: () => lease.revoke() };
  }

  async discover(service: string): Promise<ServiceInstance[]> {
    const prefix = this.servicePrefix(service);
    const result = await this.client.get(prefix, { prefix: true });
    return toInstances(
      new Map(
        result.kvs.map((kv) => [kv.key.toString('utf8').slice(prefix.length), kv.value.toString('utf8')]),
      ),
    );
  }

  /** Calls `onChange` with every instance now and after each change; close() the result to stop. */
  async watch(
    service: string,
    onChange: (instances: ServiceInstance[]) => void,
    onError?: ConfigWatchOptions['onError'],
  ): Promise<ConfigWatch> {
    const watch = new ConfigWatch(this.client, this.servicePrefix(service), {
      onChange: (config) => onChange(toInstances(config)),
      onError,
    });
    await watch.start();
    return watch;
  }
}
