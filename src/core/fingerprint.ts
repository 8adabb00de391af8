import { createHash } from 'node:crypto';

/** How a credential is named everywhere outside the proxy: `sha256:<first 12 hex>` (DESIGN §8). */
export function fingerprint(secret: string): string {
  return `sha256:${createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 12)}`;
}
