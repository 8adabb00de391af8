import { request as httpsRequest } from 'node:https';
import { Redis } from 'ioredis';

/**
 * The fleet test's evidence: everything a process printed, every HTTP answer the test
 * saw, and every Redis key and stream entry, gathered as text so it can be searched for
 * secrets in every form they could leak in.
 */
export interface Seen {
  /** Where it came from: `log authority`, `http sidecar-1 GET /status`, `redis leash:audit`… */
  what: string;
  text: string;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function describeAnswer(a: HttpAnswer): string {
  const headers = Object.entries(a.headers).map(([k, v]) => `${k}: ${v}`);
  return `${a.status}\n${headers.join('\n')}\n\n${a.body}`;
}

/** fetch, recorded in `seen` (status, every header, the whole body). */
export async function recordedFetch(seen: Seen[], what: string, url: string, init: RequestInit = {}): Promise<HttpAnswer> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });
  const answer: HttpAnswer = { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  seen.push({ what: `http ${what}`, text: describeAnswer(answer) });
  return answer;
}

/** GET over HTTPS trusting only `ca` (the authority's own endpoints), recorded in `seen`. */
export function recordedHttpsGet(seen: Seen[], what: string, url: string, ca: string): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        const answer: HttpAnswer = { status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') };
        seen.push({ what: `http ${what}`, text: describeAnswer(answer) });
        resolve(answer);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Every key of the Redis at `url`, with its content read by type (KEYS *, then GET/XRANGE/ZRANGE/HGETALL/SMEMBERS/LRANGE). */
export async function dumpRedis(url: string, label: string): Promise<Seen[]> {
  const client = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  await client.connect();
  try {
    const out: Seen[] = [];
    const keys = (await client.keys('*')).sort();
    out.push({ what: `redis ${label} KEYS *`, text: keys.join('\n') });
    for (const key of keys) {
      const type = await client.type(key);
      let content: unknown;
      switch (type) {
        case 'string':
          content = await client.get(key);
          break;
        case 'stream':
          content = await client.xrange(key, '-', '+');
          break;
        case 'zset':
          content = await client.zrange(key, '0', '-1', 'WITHSCORES');
          break;
        case 'hash':
          content = await client.hgetall(key);
          break;
        case 'set':
          content = await client.smembers(key);
          break;
        case 'list':
          content = await client.lrange(key, 0, -1);
          break;
        default:
          content = `(${type})`;
      }
      out.push({ what: `redis ${label} ${type} ${key}`, text: `${key}\n${JSON.stringify(content)}` });
    }
    return out;
  } finally {
    client.disconnect();
  }
}

/** The forms a secret could leak in: as is, base64, base64url, hex, URL-encoded. */
export function secretForms(name: string, secret: string): Record<string, string> {
  const b = Buffer.from(secret, 'utf8');
  return {
    [name]: secret,
    [`${name} (base64)`]: b.toString('base64').replace(/=+$/, ''),
    [`${name} (base64url)`]: b.toString('base64url'),
    [`${name} (hex)`]: b.toString('hex'),
    [`${name} (url-encoded)`]: encodeURIComponent(secret),
  };
}

/** Every (place, secret name) where a forbidden string occurs, case-insensitively for hex. */
export function findLeaks(seen: readonly Seen[], forbidden: Record<string, string>): string[] {
  const leaks: string[] = [];
  for (const s of seen) {
    const lower = s.text.toLowerCase();
    for (const [name, value] of Object.entries(forbidden)) {
      const hit = name.endsWith('(hex)') ? lower.includes(value.toLowerCase()) : s.text.includes(value);
      if (hit) leaks.push(`${name} in ${s.what}`);
    }
  }
  return leaks;
}
