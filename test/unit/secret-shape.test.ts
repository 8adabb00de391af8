import { describe, expect, it } from 'vitest';
import { entropy, looksLikeSecret, secretShape } from '../../src/config/secret-shape.js';
import { seededUnit } from '../helpers/random.js';

/**
 * The inline-secret detector: real-looking keys of every known shape are refused, plausible
 * lease names are not. Keys are generated from a seeded PRNG, so the run is reproducible
 * and covers many draws of each shape (a detector that only knows one sample would fail).
 */
const rand = seededUnit(0x1ea5);
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const B64URL = `${ALNUM}-_`;
const HEX = '0123456789abcdef';
const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0234567';
const LOWER36 = 'abcdefghijklmnopqrstuvwxyz0123456789';
const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
const b64url = (n: number) => pick(ALNUM, 1) + pick(B64URL, n - 2) + pick(ALNUM, 1);

/** Generators of real-looking keys, one per known shape (formats from the vendors' docs). */
const SHAPES: Record<string, () => string> = {
  'openai legacy': () => `sk-${pick(ALNUM, 48)}`,
  'openai project': () => `sk-proj-${b64url(156)}`,
  'openai svcacct': () => `sk-svcacct-${b64url(74)}`,
  'anthropic': () => `sk-ant-api03-${b64url(93)}AA`,
  'deepseek-style sk- + 32 hex': () => `sk-${pick(HEX, 32)}`,
  'stripe live': () => `sk_live_${pick(ALNUM, 24)}`,
  'stripe restricted': () => `rk_test_${pick(ALNUM, 99)}`,
  'slack bot': () => `xoxb-${pick('0123456789', 12)}-${pick('0123456789', 13)}-${pick(ALNUM, 24)}`,
  'slack user': () => `xoxp-${pick('0123456789', 12)}-${pick('0123456789', 12)}-${pick('0123456789', 13)}-${pick(HEX, 32)}`,
  'github classic': () => `ghp_${pick(ALNUM, 36)}`,
  'github app': () => `ghs_${pick(ALNUM, 36)}`,
  'github fine-grained': () => `github_pat_11${pick(UPPER_DIGITS, 20)}_${pick(ALNUM, 59)}`,
  'gitlab': () => `glpat-${pick(ALNUM, 20)}`,
  'aws access key id': () => `AKIA${pick(UPPER_DIGITS, 16)}`,
  'aws sts key id': () => `ASIA${pick(UPPER_DIGITS, 16)}`,
  'google api key': () => `AIza${b64url(35)}`,
  'google oauth access token': () => `ya29.${b64url(120)}`,
  'huggingface': () => `hf_${pick(ALNUM.slice(0, 52), 34)}${pick('0123456789', 1)}`,
  'npm': () => `npm_${pick(ALNUM, 36)}`,
  'sendgrid': () => `SG.${b64url(22)}.${b64url(43)}`,
  'jwt': () => `eyJhbGciOiJSUzI1NiJ9.eyJ${b64url(80)}.${b64url(342)}`,
  'jwt without signature': () => `eyJhbGciOiJub25lIn0.eyJ${b64url(40)}.`,
  '32 hex (the issue)': () => pick(HEX, 32),
  '40 hex': () => pick(HEX, 40),
  '64 hex upper': () => pick(HEX, 64).toUpperCase(),
  'uuid': () => `${pick(HEX, 8)}-${pick(HEX, 4)}-4${pick(HEX, 3)}-a${pick(HEX, 3)}-${pick(HEX, 12)}`,
  'base64 32 bytes': () => `${pick(`${ALNUM}+/`, 43)}=`,
  'base64url 24 chars': () => b64url(24),
  'base62 20 chars': () => pick(ALNUM, 20),
  'base36 lower 32 chars': () => pick(LOWER36, 32),
  'bearer header value': () => `Bearer ${pick(ALNUM, 40)}`,
  'pem': () => `-----BEGIN PRIVATE KEY-----\n${pick(ALNUM, 64)}\n-----END PRIVATE KEY-----`,
};

const LEASE_NAMES = [
  'openai-prod',
  'demo',
  'anthropic_batch_2',
  'search',
  'secret',
  'github-app.prod',
  'stripe-live',
  'stripe_live_eu',
  'aws-s3-readonly',
  'openai-prod-eu-west-1-batch-2025',
  'anthropic.claude.batch.v2',
  'sk-learn',
  'sk-anthropic-batch-prod',
  'sk-prod-models-2024-eu-west',
  'xoxb-slack-bot',
  'ghp-token-rotation',
  'github_pat_rotation_for_ci_jobs',
  'hf_inference_endpoints_prod',
  'npm_registry_publish_token_for_ci',
  'glpat-deploy-readonly',
  'sg.mail.prod',
  'ya29-google-oauth',
  'prod2024models2025',
  'openai2024prod2025eu',
  'build-20240101-nightly',
  'release.2024.11.26',
  'team-7f3a-search',
  'k8s-cluster-01-reader',
  'db_password_prod',
  'jwt-demo',
  'eyj-not-a-token-at-all',
  'akiaproductionreader',
  'mistral-large-2411-prod',
  'gpt-4o-mini-2024-07-18',
  'claude-3-5-sonnet-20241022',
  'claude35sonnet20241022v2',
  'strengthsandweaknessesreport',
  'customerservicesummarizer2024',
  'internal-api-v2-readwrite-eu-central-1',
  'a'.repeat(63),
  '0123456789',
];

describe('secretShape: real-looking keys are recognised', () => {
  for (const [shape, make] of Object.entries(SHAPES)) {
    it(shape, () => {
      for (let i = 0; i < 200; i++) {
        const key = make();
        expect(secretShape(key), key).toBeDefined();
        // Inside ${…} expansion a value may carry stray whitespace.
        expect(looksLikeSecret(` ${key}\n`), key).toBe(true);
      }
    });
  }
});

describe('secretShape: plausible lease names are not', () => {
  it.each(LEASE_NAMES)('%s', (name) => {
    expect(secretShape(name)).toBeUndefined();
  });

  it('short strings are never flagged (a lease name is short and made of words)', () => {
    for (let i = 0; i < 500; i++) expect(looksLikeSecret(pick(LOWER36, 1 + Math.floor(rand() * 15)))).toBe(false);
  });
});

describe('entropy', () => {
  it('is 0 for one repeated character and log2(n) for n distinct ones', () => {
    expect(entropy('aaaaaaaa')).toBe(0);
    expect(entropy('0123456789abcdef')).toBeCloseTo(4, 10);
  });
});
