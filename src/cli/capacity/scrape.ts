// GET <client URL>/metrics over http or https (with the same TLS material the gRPC client uses),
// turned into a MemberSample stamped with the local time of the answer.

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TlsOptions } from '../../client/index.js';
import { sampleFromMetrics } from './metrics-sample.js';
import type { MemberSample } from './report.js';

/** A /metrics answer larger than this is not a member's (it holds a few hundred series). */
const METRICS_BYTES_MAX = 8 * 1024 * 1024;

export function fetchMetricsText(clientUrl: string, tls: TlsOptions | undefined, timeoutMs: number) {
  const url = new URL('/metrics', clientUrl.includes('://') ? clientUrl : `http://${clientUrl}`);
  const secure = url.protocol === 'https:';
  return new Promise<string>((resolve, reject) => {
    const request = (secure ? httpsRequest : httpRequest)(
      url,
      {
        method: 'GET',
        timeout: timeoutMs,
        ...(secure
          ? {
              ca: tls?.ca,
              cert: tls?.cert,
              key: tls?.key,
              rejectUnauthorized: !(tls?.insecureSkipVerify ?? false),
            }
          : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > METRICS_BYTES_MAX)
            request.destroy(new Error(`${url.href}: answer over ${METRICS_BYTES_MAX} bytes`));
          else chunks.push(chunk);
        });
        response.on('end', () => {
          if (response.statusCode !== 200) reject(new Error(`GET ${url.href}: HTTP ${response.statusCode}`));
          else resolve(Buffer.concat(chunks).toString('utf8'));
        });
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`GET ${url.href}: no answer in ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end();
  });
}

export async function scrapeSample(
  member: string,
  clientUrl: string,
  tls: TlsOptions | undefined,
  timeoutMs: number,
): Promise<MemberSample> {
  const text = await fetchMetricsText(clientUrl, tls, timeoutMs);
  return sampleFromMetrics(member, Date.now(), text);
}
