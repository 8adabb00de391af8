import { X509Certificate } from 'node:crypto';
import { CertificateAuthority } from '../src/pki/ca.js';
import { verifyCsr } from '../src/pki/csr.js';
import { verifyClientCertificate } from '../src/pki/verify.js';
import { createCsr, createIdentityKey } from '../src/pki/x509.js';

/**
 * CA operation costs (moved out of the unit tests, where they were reported but asserted
 * nothing): signing a CSR with an EC P-256 and an RSA-2048 CA, making a key and CSR,
 * checking a CSR, verifying a client certificate.
 *
 *   npm run build && node dist/bench/ca.js [--n=50]
 */
const N = Number(process.argv.find((a) => a.startsWith('--n='))?.slice(4) ?? 50);
const TD = 'leash.local';
const ID = 'spiffe://leash.local/ns/agents/sa/doc-agent';
const HOUR = 3_600_000;
const perOp = (t: number, n: number) => `${((performance.now() - t) / n).toFixed(3)} ms/op`;

const ca = CertificateAuthority.generate(TD);
const csrs = Array.from({ length: N }, () => createCsr(createIdentityKey(), 'leash-sidecar'));
const report: string[] = [];
for (const [label, authority] of [['ec-p256 CA', ca], ['rsa-2048 CA', CertificateAuthority.generate(TD, { keyType: 'rsa-2048' })]] as const) {
  const t = performance.now();
  for (const [i, csr] of csrs.entries()) authority.signCsr(csr, `${ID}-${i}`, HOUR);
  report.push(`signCsr, ${label}: ${perOp(t, N)}`);
}
let t = performance.now();
for (let i = 0; i < N; i++) createCsr(createIdentityKey(), 'leash-sidecar');
report.push(`createIdentityKey+createCsr (P-256): ${perOp(t, N)}`);
t = performance.now();
for (const csr of csrs) verifyCsr(csr);
report.push(`verifyCsr alone: ${perOp(t, N)}`);
const x = new X509Certificate(ca.signCsr(createCsr(createIdentityKey(), 'leash-sidecar'), ID, HOUR).certificate);
t = performance.now();
for (let i = 0; i < 4 * N; i++) verifyClientCertificate(x, ca.certificate, TD);
report.push(`verifyClientCertificate: ${perOp(t, 4 * N)}`);
console.log(report.join('\n'));
