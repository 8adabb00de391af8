/**
 * Does a config string look like a secret written inline? Pure and cheap, so a config
 * value that should have been a lease name (`credential: "${VENDOR_KEY}"` with the key
 * itself in the environment) is refused before it is printed, sent to the authority or
 * shown on /status. It answers with the shape it recognised, never with the value.
 *
 * False positives are the costly mistake here (a valid lease name refused), so every
 * rule asks for something a lease name (`[a-z0-9][a-z0-9._-]*`, made of words) does not
 * have: a vendor prefix followed by a long random-looking tail, a JWT/PEM framing,
 * upper- and lower-case mixed at random, or a long run of hex or digits-and-letters
 * interleaved at random.
 */
/** What a config error says about a value that looks like a secret (never the value). */
export const INLINE_SECRET = 'looks like a secret written inline; secrets are never inline: use { env } or { file }';

export type SecretShape = 'pem' | 'key-prefix' | 'jwt' | 'uuid' | 'auth-scheme' | 'hex' | 'high-entropy';

interface Prefix {
  readonly prefix: string;
  /** Characters after the prefix in the shortest real key of that kind (conservatively). */
  readonly minRest: number;
}

/** Vendor key prefixes (longest first, so `sk-proj-` is tried before `sk-`), with real minimum lengths. */
const PREFIXES: readonly Prefix[] = [
  { prefix: 'github_pat_', minRest: 30 },
  { prefix: 'sk-proj-', minRest: 20 },
  { prefix: 'sk-ant-', minRest: 20 },
  { prefix: 'sk-svcacct-', minRest: 20 },
  { prefix: 'sk_live_', minRest: 16 },
  { prefix: 'sk_test_', minRest: 16 },
  { prefix: 'rk_live_', minRest: 16 },
  { prefix: 'rk_test_', minRest: 16 },
  { prefix: 'whsec_', minRest: 16 },
  { prefix: 'dop_v1_', minRest: 32 },
  { prefix: 'shpat_', minRest: 24 },
  { prefix: 'shpss_', minRest: 24 },
  { prefix: 'glpat-', minRest: 16 },
  { prefix: 'glptt-', minRest: 16 },
  { prefix: 'xoxb-', minRest: 16 },
  { prefix: 'xoxp-', minRest: 16 },
  { prefix: 'xoxa-', minRest: 16 },
  { prefix: 'xoxe-', minRest: 16 },
  { prefix: 'xoxr-', minRest: 16 },
  { prefix: 'xoxs-', minRest: 16 },
  { prefix: 'xapp-', minRest: 16 },
  { prefix: 'ghp_', minRest: 30 },
  { prefix: 'gho_', minRest: 30 },
  { prefix: 'ghu_', minRest: 30 },
  { prefix: 'ghs_', minRest: 30 },
  { prefix: 'ghr_', minRest: 30 },
  { prefix: 'npm_', minRest: 30 },
  { prefix: 'pypi-', minRest: 40 },
  { prefix: 'hf_', minRest: 30 },
  { prefix: 'lin_api_', minRest: 30 },
  { prefix: 'ya29.', minRest: 20 },
  { prefix: 'SG.', minRest: 20 },
  { prefix: 'sk-', minRest: 20 },
];
/** AWS access key ids and Google API keys have fixed shapes. */
const AWS_KEY_ID = /^(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}$/;
const GOOGLE_API_KEY = /^AIza[A-Za-z0-9_-]{30,}$/;
const JWT = /^eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const AUTH_SCHEME = /^(?:Bearer|Basic|Token|Bot)\s+\S{8,}/i;
const TOKEN_CHARS = /^[A-Za-z0-9_\-.=+/]+$/;

export function secretShape(text: string): SecretShape | undefined {
  if (typeof text !== 'string' || text.length < 16) return undefined;
  const s = text.trim();
  if (s.includes('-----BEGIN ')) return 'pem';
  if (AWS_KEY_ID.test(s) || GOOGLE_API_KEY.test(s)) return 'key-prefix';
  for (const { prefix, minRest } of PREFIXES) {
    if (!s.startsWith(prefix)) continue;
    const rest = s.slice(prefix.length);
    // The tail of a real key is random: long, token characters only, with a digit or a
    // capital in it and a stretch without separators; `sk-anthropic-batch` is none of that.
    if (rest.length >= minRest && TOKEN_CHARS.test(rest) && /[0-9A-Z]/.test(rest) && longestRun(rest, /[A-Za-z0-9]/) >= 10) return 'key-prefix';
    break;
  }
  if (JWT.test(s) && s.length >= 20) return 'jwt';
  if (UUID.test(s)) return 'uuid';
  if (AUTH_SCHEME.test(s)) return 'auth-scheme';
  // 20+ hex digits with letters and digits among them: API keys, HMAC secrets, tokens.
  for (const run of s.match(/[0-9a-fA-F]{20,}/g) ?? []) {
    if (/[0-9]/.test(run) && /[a-fA-F]/.test(run) && entropy(run) >= 3) return 'hex';
  }
  // base64 / base64url: random mixed case (a valid lease name is lower case).
  for (const run of s.match(/[A-Za-z0-9+/_-]{20,}/g) ?? []) {
    if (/[A-Z]/.test(run) && /[a-z]/.test(run) && entropy(run) >= 0.75 * Math.log2(Math.min(run.length, 64))) return 'high-entropy';
  }
  // Lower-case letters and digits at random (base36 tokens): many switches between
  // letters and digits, unlike words with a number (`prod2024models2025`), or clusters of
  // consonants no words make.
  for (const run of s.match(/[a-z0-9]{24,}/g) ?? []) {
    const random = switches(run) >= 6 || (run.match(/[bcdfghjklmnpqrstvwxz]{4,}/g) ?? []).length >= 2;
    // 0.7, not 0.75 as for mixed case: about 1 in 1,000 random 32-character base36 keys
    // falls under 0.75 × log2(32) (found by test/unit/secret-shape.test.ts once its draws changed).
    if (random && entropy(run) >= 0.7 * Math.log2(Math.min(run.length, 36))) return 'high-entropy';
  }
  return undefined;
}

export function looksLikeSecret(text: string): boolean {
  return secretShape(text) !== undefined;
}

/** Shannon entropy in bits per character. */
export function entropy(text: string): number {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

function longestRun(text: string, char: RegExp): number {
  let best = 0;
  let cur = 0;
  for (const c of text) {
    cur = char.test(c) ? cur + 1 : 0;
    best = Math.max(best, cur);
  }
  return best;
}

/** How often a string switches between letters and digits. */
function switches(text: string): number {
  let n = 0;
  for (let i = 1; i < text.length; i++) if (/\d/.test(text[i]!) !== /\d/.test(text[i - 1]!)) n++;
  return n;
}

/**
 * Shapes only a secret has. Not the UUID, hex and random-looking ones: in paths they name
 * pods, containers, temporary directories (`leash-x-c8A7k4…`) and API objects (a Drive
 * file id), and a valid config refused is the costly mistake.
 */
const IN_PATH: ReadonlySet<SecretShape> = new Set(['pem', 'key-prefix', 'jwt', 'auth-scheme']);

/**
 * Does a path (a file path, a URL's path, an allow rule's) hold a segment that can only be
 * a secret: a vendor key, a JWT, PEM, `Bearer …`? Segments are percent-decoded when they
 * decode. A key glued to other text (`bot<token>`) is not recognised.
 */
export function hasSecretSegment(path: string): boolean {
  // Base64 holds `/`: a key encoded on one line is looked at whole, not cut into segments.
  if (isEncodedKey(path)) return true;
  return path.split('/').some((seg) => {
    let s = seg;
    try {
      s = decodeURIComponent(seg);
    } catch {
      // as written
    }
    return onlyASecret(s);
  });
}

/**
 * Is `path` a file's contents rather than its path (a PEM block, a key or token, a key
 * encoded on one line, anything with a line break)? The one rule for the path keys
 * (config/common.ts filePath) and for what is printed when a path cannot be read
 * (bin/files.ts readText): such a value is never shown. (`{ file }` sources refuse the
 * secret shapes alone: a line break in their path is the file's name, shown printable.)
 */
export function isFileContents(path: string): boolean {
  return /[\r\n]/.test(path) || hasSecretSegment(path);
}

/** Base64 (either alphabet, padded or not) long enough for the smallest key (Ed25519 PKCS#8: 64). */
const BASE64_TEXT = /^[A-Za-z0-9+/_-]{64,}={0,2}$/;

/**
 * Is `text` a key or certificate encoded on one line, as containers are handed them: base64
 * of a PEM file (a Secret's data, `CA_KEY_B64`), or a PEM body joined into one line (base64
 * of DER)? Decided by decoding it — a PEM header, or one ASN.1 SEQUENCE exactly as long as
 * the bytes — not by how random it looks, so no real path is refused.
 */
export function isEncodedKey(text: string): boolean {
  const s = text.replace(/\s+/g, '');
  if (!BASE64_TEXT.test(s)) return false;
  const bytes = Buffer.from(s, 'base64');
  if (bytes.includes('-----BEGIN ')) return true;
  if (bytes.length < 4 || bytes[0] !== 0x30) return false;
  const first = bytes[1]!;
  const [length, head] = first < 0x80 ? [first, 2] : first === 0x81 ? [bytes[2]!, 3] : first === 0x82 ? [(bytes[2]! << 8) | bytes[3]!, 4] : [-1, 0];
  return head + length === bytes.length;
}

/** Has `text` a shape only a secret has (IN_PATH)? */
function onlyASecret(text: string): boolean {
  const shape = secretShape(text);
  return shape !== undefined && IN_PATH.has(shape);
}

/**
 * Does a short config text that is printed as it is (an `inject.format`, a Basic username,
 * `instance.id`) hold something that can only be a secret: the whole text, or one of its
 * words, a vendor key, a JWT, PEM or `Bearer …`? The same narrow shapes as in paths:
 * instance ids are pod names and UUIDs, and a username may be random-looking.
 */
export function holdsSecret(text: string): boolean {
  return [text, ...text.split(/[\s/,;=]+/)].some(onlyASecret);
}
