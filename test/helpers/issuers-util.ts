import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssueRequest } from '../../src/authority/issuers/types.js';
import { waitFor } from './wait.js';

/** A temp directory and its cleanup. */
export function tempDir(prefix = 'leash-issuers-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

let seq = 0;
/** An IssueRequest with sensible defaults; nowMs is the real wall clock unless given. */
export function request(over: Partial<IssueRequest> = {}): IssueRequest {
  seq += 1;
  return {
    identity: 'spiffe://leash.local/ns/agents/sa/doc-agent/pod-1',
    credential: 'test-cred',
    leaseId: `lease-${seq}`,
    maxTtlMs: 300_000,
    nowMs: Date.now(),
    ...over,
  };
}

/** Poll `pred` until it holds or `timeoutMs` passes. */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs = 3000, stepMs = 20): Promise<void> {
  await waitFor(pred, { timeoutMs, intervalMs: stepMs });
}

/** The rejection of `p`, which must reject. */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; context?: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}
