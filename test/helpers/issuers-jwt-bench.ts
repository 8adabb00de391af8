/**
 * JWT issuance throughput (not a test): sequential and with 32 issue() calls in flight.
 * Run: npx tsc --outDir .issuers-bench --rootDir . --module nodenext --moduleResolution nodenext \
 *        --target es2022 --skipLibCheck --types node --ignoreConfig test/helpers/issuers-jwt-bench.ts && node .issuers-bench/test/helpers/issuers-jwt-bench.js
 * Measured (Node 20.20, one core pinned with taskset): ~6,200/s sequential, ~7,300/s concurrent.
 */
import { JwtIssuer, JwtKeyRing } from '../../src/authority/issuers/jwt.js';

const keys = await JwtKeyRing.generate();
const issuer = new JwtIssuer({ issuer: 'https://leash-authority.test', audience: 'search-api', scopes: ['search:read'], keys });
const req = (i: number) => ({ identity: `spiffe://leash.local/ns/agents/sa/a/pod-${i}`, credential: 'search', leaseId: `l-${i}`, maxTtlMs: 300_000, nowMs: Date.now() });

for (let i = 0; i < 500; i++) await issuer.issue(req(i)); // warm-up

const N = 20_000;
let t0 = performance.now();
for (let i = 0; i < N; i++) await issuer.issue(req(i));
const seq = N / ((performance.now() - t0) / 1000);

t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: 32 }, async () => {
    while (next < N) await issuer.issue(req(next++));
  }),
);
const par = N / ((performance.now() - t0) / 1000);
console.log(JSON.stringify({ tokens: N, sequentialPerSecond: Math.round(seq), concurrent32PerSecond: Math.round(par), node: process.version }));
