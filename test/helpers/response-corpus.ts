import { Agent, request, STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll } from 'vitest';
import { startUpstream } from './harness.js';

/**
 * A corpus of hostile upstream answers, generated here: malformed status lines, reason
 * phrases with every control byte, bad header names and values, framing conflicts, bad
 * chunking, premature closes, 1xx sequences, unsolicited 101s, oversized heads. Each case
 * is the exact bytes a raw `net` upstream writes, and what the agent may see in return.
 *
 * `expect`:
 * - `relay`   the upstream's status reaches the agent (no x-leash-error);
 * - `refuse`  502 leash_upstream_bad_response;
 * - `leash502` a leash 502 (bad response, or unreachable when the upstream closed early);
 * - `any`     any well-formed answer (which one is Node's parser's call, not leash's).
 * `mayCut`: the agent's connection may be cut (headers sent, then the upstream failed).
 */
export type Expectation = 'relay' | 'refuse' | 'leash502' | 'any';

export interface Case {
  name: string;
  bytes: Buffer;
  /** After writing: end the connection (default) or reset it. */
  close?: 'end' | 'reset';
  method?: 'GET' | 'HEAD';
  expect: Expectation;
  /** The status expected with `relay`. */
  status?: number;
  mayCut?: boolean;
  /** Extra check on what the agent got: a failure message, or undefined. */
  check?: (got: { headers: Record<string, string | string[] | undefined>; body: string }) => string | undefined;
}

const bin = (s: string) => Buffer.from(s, 'latin1');
const hex2 = (n: number) => n.toString(16).padStart(2, '0');

/** A response with an automatic content-length. */
function resp(statusLine: string, headers: string[] = [], body = ''): Buffer {
  return bin(`${statusLine}\r\n${headers.map((h) => `${h}\r\n`).join('')}content-length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`);
}
/** A response written exactly as given (no framing added). */
function raw(text: string): Buffer {
  return bin(text);
}

const absent = (name: string) => (got: { headers: Record<string, unknown> }) => (got.headers[name] === undefined ? undefined : `header ${name} should have been dropped`);

export function buildCorpus(secret: string): Case[] {
  const cases: Case[] = [];
  const add = (c: Case) => cases.push(c);

  // --- A. status codes -------------------------------------------------------------
  for (const code of ['000', '001', '099', '600', '700', '999']) add({ name: `status ${code}`, bytes: resp(`HTTP/1.1 ${code} Whatever`), expect: 'refuse' });
  for (const code of [200, 201, 202, 204, 206, 299, 304, 399, 404, 418, 451, 499, 500, 599]) {
    add({ name: `status ${code} relayed`, bytes: resp(`HTTP/1.1 ${code} Whatever`), expect: 'relay', status: code });
  }
  for (const code of ['1000', '2000', '-1', '-200', 'abc', '2O0', '20', '2', '', ' 200', '+200', '0x1', '20 0', '\u0662\u0660\u0660', '200.0', '2\u0000\u00000']) {
    add({ name: `status ${JSON.stringify(code)} unparsable`, bytes: resp(`HTTP/1.1 ${code} Whatever`), expect: 'leash502' });
  }
  // A 1xx as the only answer: Node waits for the final one, then the upstream closes.
  for (const code of ['100', '102', '199']) add({ name: `${code} then close`, bytes: resp(`HTTP/1.1 ${code} Interim`), expect: 'leash502' });

  // --- B. reason phrases -----------------------------------------------------------
  for (let b = 0; b < 0x20; b++) add({ name: `reason with 0x${hex2(b)}`, bytes: resp(`HTTP/1.1 200 Ok${String.fromCharCode(b)}ay`), expect: 'any' });
  add({ name: 'reason with DEL', bytes: resp('HTTP/1.1 200 Ok\u007fay'), expect: 'any' });
  add({ name: 'reason with DEL on 401', bytes: resp('HTTP/1.1 401 Bad\u007fkey'), expect: 'any' });
  for (const b of [0x00, 0x01, 0x09, 0x0b, 0x1b, 0x7f]) {
    add({ name: `401 reason with secret and 0x${hex2(b)}`, bytes: resp(`HTTP/1.1 401 Invalid key ${secret}${String.fromCharCode(b)}`), expect: 'any' });
  }
  for (const b of [0x80, 0xa0, 0xe9, 0xff]) add({ name: `reason with obs-text 0x${hex2(b)}`, bytes: resp(`HTTP/1.1 200 Ok${String.fromCharCode(b)}`), expect: 'relay', status: 200 });
  add({ name: 'reason in UTF-8', bytes: Buffer.concat([bin('HTTP/1.1 200 '), Buffer.from('Résumé ✓', 'utf8'), bin('\r\ncontent-length: 0\r\n\r\n')]), expect: 'relay', status: 200 });
  for (const code of [200, 201, 302, 401, 403, 429, 500, 503]) {
    add({ name: `${code} reason holds the secret`, bytes: resp(`HTTP/1.1 ${code} Invalid key ${secret}`), expect: 'relay', status: code });
  }
  add({ name: '999 reason holds the secret', bytes: resp(`HTTP/1.1 999 Invalid key ${secret}`), expect: 'refuse' });
  add({ name: '000 reason holds the secret', bytes: resp(`HTTP/1.1 000 Invalid key ${secret}`), expect: 'refuse' });
  add({ name: 'reason is the secret alone', bytes: resp(`HTTP/1.1 401 ${secret}`), expect: 'relay', status: 401 });
  add({ name: 'reason holds a fragment of the secret', bytes: resp(`HTTP/1.1 401 key ${secret.slice(4, 16)} refused`), expect: 'relay', status: 401 });
  add({ name: 'empty reason', bytes: resp('HTTP/1.1 200 '), expect: 'relay', status: 200 });
  add({ name: 'no reason, no space', bytes: resp('HTTP/1.1 200'), expect: 'relay', status: 200 });
  add({ name: 'reason of spaces', bytes: resp('HTTP/1.1 200      '), expect: 'relay', status: 200 });
  add({ name: 'reason a tab', bytes: resp('HTTP/1.1 200 \t'), expect: 'any' });
  add({ name: 'reason 4000 chars', bytes: resp(`HTTP/1.1 200 ${'r'.repeat(4000)}`), expect: 'relay', status: 200 });
  add({ name: 'reason with header injection attempt', bytes: resp('HTTP/1.1 200 OK\rx-injected: 1'), expect: 'any', check: absent('x-injected') });

  // --- C. header names -------------------------------------------------------------
  for (const c of [' ', '"', '(', ')', ',', '/', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}', '\t', '\u007f', '\u0001', '\u0000', '\u00e9', '\u00ff']) {
    add({ name: `header name with ${JSON.stringify(c)}`, bytes: resp('HTTP/1.1 200 OK', [`x-bad${c}name: v`]), expect: 'any' });
  }
  add({ name: 'empty header name', bytes: resp('HTTP/1.1 200 OK', [': v']), expect: 'any' });
  add({ name: 'space before colon', bytes: resp('HTTP/1.1 200 OK', ['x-a : v']), expect: 'any' });
  add({ name: 'header line without colon', bytes: resp('HTTP/1.1 200 OK', ['x-no-colon']), expect: 'any' });
  add({ name: 'header name is the secret', bytes: resp('HTTP/1.1 200 OK', [`${secret}: 1`]), expect: 'relay', status: 200 });
  add({ name: 'header name holds the secret', bytes: resp('HTTP/1.1 200 OK', [`x-${secret}: 1`, 'x-kept: yes']), expect: 'relay', status: 200, check: (g) => (g.headers['x-kept'] === 'yes' ? undefined : 'a good header was lost') });
  add({ name: 'header name holds the secret on 401', bytes: resp('HTTP/1.1 401 Unauthorized', [`x-${secret}: 1`]), expect: 'relay', status: 401 });
  add({ name: 'header name holds the secret on 302', bytes: resp('HTTP/1.1 302 Found', [`x-${secret}: 1`, 'location: /x']), expect: 'relay', status: 302 });
  add({ name: 'header name 200 chars', bytes: resp('HTTP/1.1 200 OK', [`x-${'n'.repeat(200)}: v`]), expect: 'relay', status: 200 });

  // --- D. header values ------------------------------------------------------------
  for (let b = 0; b < 0x20; b++) {
    if (b === 0x09 || b === 0x0a || b === 0x0d) continue;
    add({ name: `header value with 0x${hex2(b)}`, bytes: resp('HTTP/1.1 200 OK', [`x-v: a${String.fromCharCode(b)}b`, 'x-kept: yes']), expect: 'any' });
  }
  add({ name: 'header value with DEL', bytes: resp('HTTP/1.1 200 OK', ['x-v: a\u007fb', 'x-kept: yes']), expect: 'any' });
  add({ name: 'header value with DEL on 401', bytes: resp('HTTP/1.1 401 Unauthorized', ['x-v: a\u007fb']), expect: 'any' });
  add({ name: 'header value with bare CR', bytes: resp('HTTP/1.1 200 OK', ['x-v: a\rx-injected: 1']), expect: 'any', check: absent('x-injected') });
  add({ name: 'header value with bare LF', bytes: resp('HTTP/1.1 200 OK', ['x-v: a\nx-injected: 1']), expect: 'any' });
  add({ name: 'header value with CR LF NUL', bytes: resp('HTTP/1.1 200 OK', ['x-v: a\r\u0000\nb']), expect: 'any' });
  for (const b of [0x80, 0xa0, 0xff]) add({ name: `header value with obs-text 0x${hex2(b)}`, bytes: resp('HTTP/1.1 200 OK', [`x-v: a${String.fromCharCode(b)}b`]), expect: 'relay', status: 200 });
  add({ name: 'header value in UTF-8', bytes: Buffer.concat([bin('HTTP/1.1 200 OK\r\nx-v: '), Buffer.from('naïve ✓', 'utf8'), bin('\r\ncontent-length: 0\r\n\r\n')]), expect: 'relay', status: 200 });
  add({ name: 'obs-fold', bytes: resp('HTTP/1.1 200 OK', ['x-v: a', '  folded']), expect: 'any' });
  add({ name: 'obs-fold carrying the secret', bytes: resp('HTTP/1.1 401 Unauthorized', ['x-v: key', ` ${secret}`]), expect: 'any' });
  add({ name: 'empty header value', bytes: resp('HTTP/1.1 200 OK', ['x-v:']), expect: 'relay', status: 200 });
  add({ name: 'header value only whitespace', bytes: resp('HTTP/1.1 200 OK', ['x-v: \t ']), expect: 'relay', status: 200 });
  for (const code of [200, 204, 302, 401, 500]) {
    add({ name: `${code}: secret in a header value`, bytes: resp(`HTTP/1.1 ${code} X`, [`x-debug: key=${secret}`]), expect: 'relay', status: code });
    add({ name: `${code}: set-cookie list with the secret`, bytes: resp(`HTTP/1.1 ${code} X`, [`set-cookie: k=${secret}`, `set-cookie: j=${secret}; Path=/`]), expect: 'relay', status: code });
    add({ name: `${code}: location with the secret`, bytes: resp(`HTTP/1.1 ${code} X`, [`location: https://elsewhere.example/cb?key=${secret}`]), expect: 'relay', status: code });
    add({ name: `${code}: refresh with the secret`, bytes: resp(`HTTP/1.1 ${code} X`, [`refresh: 0; url=/next?key=${secret}`]), expect: 'relay', status: code });
    add({ name: `${code}: masked secret in location`, bytes: resp(`HTTP/1.1 ${code} X`, [`location: /cb?key=${secret.slice(0, 6)}****${secret.slice(-4)}`]), expect: 'relay', status: code });
    add({ name: `${code}: fragment of the secret in refresh`, bytes: resp(`HTTP/1.1 ${code} X`, [`refresh: 5; url=/x?k=${secret.slice(3, 15)}`]), expect: 'relay', status: code });
  }
  add({ name: 'content-location with the secret', bytes: resp('HTTP/1.1 200 OK', [`content-location: /x?key=${secret}`]), expect: 'relay', status: 200 });
  add({ name: 'fragment of the secret in a 401 header', bytes: resp('HTTP/1.1 401 X', [`x-hint: ${secret.slice(2, 14)}`]), expect: 'relay', status: 401 });
  add({ name: 'connection lists a header holding the secret', bytes: resp('HTTP/1.1 200 OK', ['connection: x-private', `x-private: ${secret}`]), expect: 'relay', status: 200, check: absent('x-private') });
  add({ name: 'x-leash-error from the upstream', bytes: resp('HTTP/1.1 403 Forbidden', ['x-leash-error: leash_denied', 'X-Leash-Body-Withheld: no']), expect: 'relay', status: 403, check: absent('x-leash-error') });

  // HTML character references (an HTML error page, an encoder that escapes punctuation or everything).
  const htmlHex = [...secret].map((c) => `&#x${c.charCodeAt(0).toString(16)};`).join('');
  const htmlPunct = secret.replace(/[^A-Za-z0-9]/g, (c) => `&#${c.charCodeAt(0)};`);
  const noHtmlSecret = (got: { headers: Record<string, unknown>; body: string }) => {
    const text = `${JSON.stringify(got.headers)}\n${got.body}`.replace(/&#x([0-9a-f]+);?|&#([0-9]+);?/gi, (_m, h?: string, d?: string) => String.fromCharCode(h !== undefined ? parseInt(h, 16) : Number(d)));
    return text.includes(secret) ? 'the secret is readable once HTML references are decoded' : undefined;
  };
  for (const [how, enc] of [['every character as &#x..;', htmlHex], ['punctuation as &#..;', htmlPunct]] as const) {
    const page = `<html><body><h1>401</h1><p>Invalid API key: ${enc}</p></body></html>`;
    add({ name: `401 HTML page, secret with ${how}`, bytes: resp('HTTP/1.1 401 Unauthorized', ['content-type: text/html'], page), expect: 'relay', status: 401, check: noHtmlSecret });
    add({ name: `401 header value, secret with ${how}`, bytes: resp('HTTP/1.1 401 Unauthorized', [`x-debug: key=${enc}`]), expect: 'relay', status: 401, check: noHtmlSecret });
  }

  // --- E. framing ------------------------------------------------------------------
  add({ name: 'duplicate content-length, same', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello'), expect: 'any' });
  add({ name: 'duplicate content-length, different', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!'), expect: 'leash502' });
  add({ name: 'content-length list', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello'), expect: 'any' });
  for (const cl of ['-1', 'abc', '+5', '0x5', '5 5', '99999999999999999999', '5\u0000']) {
    add({ name: `content-length ${JSON.stringify(cl)}`, bytes: raw(`HTTP/1.1 200 OK\r\ncontent-length: ${cl}\r\n\r\nhello`), expect: 'any', mayCut: true });
  }
  add({ name: 'content-length and transfer-encoding', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: 'transfer-encoding chunked twice (two lines)', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), expect: 'leash502', mayCut: true });
  add({ name: 'transfer-encoding "chunked, chunked"', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), expect: 'leash502', mayCut: true });
  const gz = gzipSync(Buffer.from(`{"error":"bad key ${secret}"}`));
  const chunkedGz = Buffer.concat([bin(`${gz.length.toString(16)}\r\n`), gz, bin('\r\n0\r\n\r\n')]);
  add({ name: 'transfer-encoding "gzip, chunked" on 401', bytes: Buffer.concat([bin('HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: gzip, chunked\r\n\r\n'), chunkedGz]), expect: 'refuse' });
  add({ name: 'transfer-encoding "gzip, chunked" on 200', bytes: Buffer.concat([bin('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n'), chunkedGz]), expect: 'refuse' });
  add({ name: 'transfer-encoding gzip, read to close', bytes: Buffer.concat([bin('HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: gzip\r\n\r\n'), gz]), expect: 'leash502' });
  add({ name: 'transfer-encoding identity', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\nhello'), expect: 'leash502' });
  add({ name: 'transfer-encoding "chunked, gzip"', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nhello'), expect: 'leash502' });
  add({ name: 'transfer-encoding with obs-text', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: ch\u00e9nked\r\n\r\nhello'), expect: 'leash502' });
  add({ name: 'chunk size not hex', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: 'chunk size overflow', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: 'chunk data longer than its size', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: 'chunk extension with a control byte', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=\u0001\r\nhello\r\n0\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: 'missing last chunk, then close', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n'), expect: 'any', mayCut: true });
  add({ name: 'trailer holds the secret', bytes: raw(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: ${secret}\r\n\r\n`), expect: 'relay', status: 200 });
  add({ name: 'trailer with a control byte', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: a\u0001b\r\n\r\n'), expect: 'any', mayCut: true });
  add({ name: '401 chunked body splits the secret', bytes: raw(`HTTP/1.1 401 X\r\ntransfer-encoding: chunked\r\n\r\n${(5).toString(16)}\r\n${secret.slice(0, 5)}\r\n${(secret.length - 5).toString(16)}\r\n${secret.slice(5)}\r\n0\r\n\r\n`), expect: 'relay', status: 401 });
  add({ name: '401 gzip body holds the secret', bytes: Buffer.concat([bin(`HTTP/1.1 401 X\r\ncontent-encoding: gzip\r\ncontent-length: ${gz.length}\r\n\r\n`), gz]), expect: 'relay', status: 401 });
  add({ name: '401 unknown content-encoding', bytes: raw(`HTTP/1.1 401 X\r\ncontent-encoding: zstd\r\ncontent-length: ${secret.length}\r\n\r\n${secret}`), expect: 'relay', status: 401 });
  add({ name: '401 corrupt gzip body', bytes: raw('HTTP/1.1 401 X\r\ncontent-encoding: gzip\r\ncontent-length: 10\r\n\r\nnot-gzip!!'), expect: 'refuse' });
  add({ name: '200 read to close', bytes: raw('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close'), expect: 'relay', status: 200 });
  add({ name: 'HEAD with content-length and no body', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n'), method: 'HEAD', expect: 'relay', status: 200 });
  add({ name: '204 with a body', bytes: raw('HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello'), expect: 'any' });
  add({ name: '304 chunked', bytes: raw('HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'), expect: 'any' });
  add({ name: '302 body holds the secret', bytes: resp('HTTP/1.1 302 Found', ['location: /next'], `Redirecting to /next?key=${secret}`), expect: 'relay', status: 302 });
  add({ name: '500 body holds a masked secret', bytes: resp('HTTP/1.1 500 X', ['content-type: application/json'], `{"m":"key ${secret.slice(0, 7)}*****${secret.slice(-4)}"}`), expect: 'relay', status: 500 });

  // --- F. premature close ----------------------------------------------------------
  add({ name: 'close without a byte', bytes: Buffer.alloc(0), expect: 'leash502' });
  add({ name: 'reset without a byte', bytes: Buffer.alloc(0), close: 'reset', expect: 'leash502' });
  add({ name: 'close inside the status line', bytes: raw('HTTP/1.1 2'), expect: 'leash502' });
  add({ name: 'close after the status line', bytes: raw('HTTP/1.1 200 OK\r\n'), expect: 'leash502' });
  add({ name: 'close inside the headers', bytes: raw('HTTP/1.1 200 OK\r\ncontent-ty'), expect: 'leash502' });
  add({ name: 'close inside the body (content-length)', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b'), expect: 'any', mayCut: true });
  add({ name: 'close inside a chunk', bytes: raw('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n64\r\nonly ten b'), expect: 'any', mayCut: true });
  add({ name: 'reset inside the body', bytes: raw('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b'), close: 'reset', expect: 'any', mayCut: true });
  add({ name: '401 closes inside a body holding the secret', bytes: raw(`HTTP/1.1 401 X\r\ncontent-length: 500\r\n\r\nbad key ${secret}`), expect: 'refuse' });
  add({ name: '401 chunked closes after the secret', bytes: raw(`HTTP/1.1 401 X\r\ntransfer-encoding: chunked\r\n\r\n${secret.length.toString(16)}\r\n${secret}\r\n`), expect: 'refuse' });
  add({ name: '100 Continue then close', bytes: raw('HTTP/1.1 100 Continue\r\n\r\n'), expect: 'leash502' });

  // --- G. 1xx sequences ------------------------------------------------------------
  const ok = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
  add({ name: '100 then 200', bytes: raw(`HTTP/1.1 100 Continue\r\n\r\n${ok}`), expect: 'relay', status: 200 });
  add({ name: '102 then 200', bytes: raw(`HTTP/1.1 102 Processing\r\n\r\n${ok}`), expect: 'relay', status: 200 });
  add({ name: '103 Early Hints then 200', bytes: raw(`HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n${ok}`), expect: 'relay', status: 200 });
  add({ name: '103 with the secret then 200', bytes: raw(`HTTP/1.1 103 Early Hints ${secret}\r\nlink: </x?key=${secret}>; rel=preload\r\n\r\n${ok}`), expect: 'relay', status: 200 });
  add({ name: 'five 100s then 200', bytes: raw(`${'HTTP/1.1 100 Continue\r\n\r\n'.repeat(5)}${ok}`), expect: 'relay', status: 200 });
  add({ name: '200 interim 103s then 200', bytes: raw(`${'HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n'.repeat(200)}${ok}`), expect: 'relay', status: 200 });
  add({ name: '100, 103, then 401 with the secret', bytes: raw(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 401 X\r\ncontent-length: ${secret.length}\r\n\r\n${secret}`), expect: 'relay', status: 401 });
  add({ name: '1xx with a control byte in a header, then 200', bytes: raw(`HTTP/1.1 103 Early Hints\r\nx-v: a\u0001b\r\n\r\n${ok}`), expect: 'any' });
  add({ name: '1xx with DEL in its reason, then 200', bytes: raw(`HTTP/1.1 100 Co\u007fntinue\r\n\r\n${ok}`), expect: 'any' });
  add({ name: '199 then 200', bytes: raw(`HTTP/1.1 199 Odd\r\n\r\n${ok}`), expect: 'relay', status: 200 });
  add({ name: '100 then 000', bytes: raw('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n'), expect: 'refuse' });
  add({ name: '100 then 999', bytes: raw('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n'), expect: 'refuse' });
  add({ name: '100 then 101', bytes: raw('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'), expect: 'refuse' });
  add({ name: '100 with a body, then 200', bytes: raw(`HTTP/1.1 100 Continue\r\ncontent-length: 5\r\n\r\nhello${ok}`), expect: 'any' });

  // --- H. 101 on a request that did not ask to upgrade --------------------------------
  add({ name: 'unsolicited 101 websocket', bytes: raw('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'), expect: 'refuse' });
  add({ name: 'unsolicited 101 h2c', bytes: raw('HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n'), expect: 'refuse' });
  add({ name: 'unsolicited 101, no headers', bytes: raw('HTTP/1.1 101 Switching Protocols\r\n\r\n'), expect: 'refuse' });
  add({ name: 'unsolicited 101 with set-cookie secret', bytes: raw(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nset-cookie: k=${secret}\r\n\r\n`), expect: 'refuse' });
  add({ name: 'unsolicited 101 then bytes holding the secret', bytes: raw(`HTTP/1.1 101 Switching Protocols ${secret}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nframe ${secret}`), expect: 'refuse' });
  add({ name: 'unsolicited 101 with content-length', bytes: raw('HTTP/1.1 101 Switching Protocols\r\ncontent-length: 5\r\n\r\nhello'), expect: 'refuse' });

  // --- I. oversized heads ------------------------------------------------------------
  add({ name: 'header value 17 KB', bytes: resp('HTTP/1.1 200 OK', [`x-big: ${'v'.repeat(17_000)}`]), expect: 'refuse' });
  add({ name: 'reason 20 KB', bytes: resp(`HTTP/1.1 200 ${'r'.repeat(20_000)}`), expect: 'refuse' });
  add({ name: 'header name 20 KB', bytes: resp('HTTP/1.1 200 OK', [`x-${'n'.repeat(20_000)}: v`]), expect: 'refuse' });
  add({ name: '3000 headers', bytes: resp('HTTP/1.1 200 OK', Array.from({ length: 3000 }, (_, i) => `x-${i}: v`)), expect: 'refuse' });
  add({ name: '150 set-cookies with the secret on 401', bytes: resp('HTTP/1.1 401 X', Array.from({ length: 150 }, (_, i) => `set-cookie: c${i}=${secret}`)), expect: 'relay', status: 401 });
  add({ name: '150 set-cookies with the secret on 200', bytes: resp('HTTP/1.1 200 OK', Array.from({ length: 150 }, (_, i) => `set-cookie: c${i}=${secret}`)), expect: 'relay', status: 200 });

  // --- J. not quite HTTP/1.1 -----------------------------------------------------------
  add({ name: 'HTTP/1.0', bytes: resp('HTTP/1.0 200 OK'), expect: 'relay', status: 200 });
  add({ name: 'HTTP/2.0 status line', bytes: resp('HTTP/2.0 200 OK'), expect: 'any' });
  add({ name: 'HTTP/0.9 body only', bytes: raw('hello'), expect: 'leash502' });
  add({ name: 'lower-case http', bytes: resp('http/1.1 200 OK'), expect: 'leash502' });
  add({ name: 'double space before status', bytes: resp('HTTP/1.1  200 OK'), expect: 'leash502' });
  add({ name: 'LF-only line endings', bytes: raw('HTTP/1.1 200 OK\ncontent-length: 2\n\nok'), expect: 'any' });
  add({ name: 'NUL bytes', bytes: Buffer.alloc(64), expect: 'leash502' });
  add({ name: 'binary noise', bytes: Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 73 + 41) & 0xff)), expect: 'leash502' });
  add({ name: 'ICY status line', bytes: resp('ICY 200 OK'), expect: 'leash502' });
  add({ name: 'RTSP status line', bytes: resp('RTSP/1.0 200 OK'), expect: 'any' });
  add({ name: 'leading CRLF before the status line', bytes: Buffer.concat([bin('\r\n'), resp('HTTP/1.1 200 OK')]), expect: 'any' });
  add({ name: 'TLS record to a plain request', bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]), expect: 'leash502' });
  add({ name: 'status line with the secret as version', bytes: resp(`${secret} 200 OK`), expect: 'leash502' });
  add({ name: 'two responses back to back', bytes: raw(`${ok}HTTP/1.1 401 ${secret}\r\ncontent-length: 0\r\n\r\n`), expect: 'relay', status: 200 });
  return cases;
}

// --- Running the corpus: the raw upstream, the agent, the judge ---------------------------
// Shared by test/integration/response-corpus.test.ts (sidecar in this process) and
// test/security/response-fuzz.test.ts (sidecar as the built CLI's process).

/** The routes the cases rotate over (header, basic and query injection). */
export const CORPUS_ROUTES = ['h', 'b', 'q'] as const;

/** The forms of the secret that must appear nowhere: raw, and the basic credential's base64. */
export function secretForms(secret: string): string[] {
  return [secret, Buffer.from(`user:${secret}`).toString('base64')];
}

/** The raw upstream: reads each request head, answers the case its path names, then closes. */
export function rawUpstream(corpus: Case[]): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const m = /^[A-Z]+ \/case\/(\d+)/.exec(head);
      head = '';
      const c = m ? corpus[Number(m[1])] : undefined;
      if (!c) return void socket.destroy();
      socket.write(c.bytes, () => (c.close === 'reset' ? socket.resetAndDestroy() : socket.end()));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

/** The corpus, its raw upstream, a good upstream for health requests, and the sidecar routes to both. */
export interface CorpusUpstreams {
  cases: Case[];
  /** Routes h, b, q (to the raw upstream) and ok (to the good one), credential from env KEY. */
  routes: Record<string, unknown>;
  close(): Promise<void>;
}

export async function startCorpusUpstreams(secret: string): Promise<CorpusUpstreams> {
  const cases = buildCorpus(secret);
  const raw = await rawUpstream(cases);
  const good = await startUpstream((_req, res) => res.end('ok'));
  const upstream = `http://127.0.0.1:${raw.port}`;
  const common = { credential: { env: 'KEY' }, allow: ['GET /**', 'HEAD /**'], timeouts: { idle: '3s' } };
  return {
    cases,
    routes: {
      h: { ...common, upstream, inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
      b: { ...common, upstream, inject: { basic: { username: 'user' } } },
      q: { ...common, upstream, inject: { query: 'key' } },
      ok: { ...common, upstream: good.url, inject: { header: 'x-api-key' } },
    },
    async close() {
      await new Promise((r) => raw.server.close(r));
      await good.close();
    },
  };
}

export type Outcome =
  | { kind: 'response'; status: number; reason: string; headers: IncomingHttpHeaders; body: string; complete: boolean }
  | { kind: 'closed'; code: string }
  | { kind: 'hang' };

/** The agent: one keep-alive connection to leash, every byte it receives kept. */
export class CorpusAgent {
  /** leash's port; set once the sidecar listens. */
  port = 0;
  /** Every byte the agent received, on every connection. */
  readonly received: Buffer[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private readonly tapped = new WeakSet<Socket>();

  /** One request as an agent makes it, through Node's strict client parser. */
  request(path: string, method = 'GET'): Promise<Outcome> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(o);
      };
      const req = request({ host: '127.0.0.1', port: this.port, path, method, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        const result = (complete: boolean): Outcome => ({
          kind: 'response',
          status: res.statusCode ?? 0,
          reason: res.statusMessage ?? '',
          headers: res.headers,
          body: Buffer.concat(chunks).toString('latin1'),
          complete,
        });
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish(result(res.complete)));
        res.on('aborted', () => finish(result(false)));
        res.on('error', () => finish(result(false)));
      });
      req.on('socket', (s: Socket) => {
        if (this.tapped.has(s)) return;
        this.tapped.add(s);
        s.on('data', (d: Buffer) => this.received.push(d));
      });
      req.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'closed', code: err.code ?? String(err) }));
      const timer = setTimeout(() => {
        finish({ kind: 'hang' });
        req.destroy();
      }, 4_000);
      req.end();
    });
  }

  destroy(): void {
    this.agent.destroy();
  }
}

/** What is wrong with the agent's answer to one case (empty: nothing). */
export function judge(c: Case, o: Outcome): string[] {
  if (o.kind === 'hang') return ['the agent got no answer within 4 s'];
  if (o.kind === 'closed') {
    if (o.code.startsWith('HPE_')) return [`the agent's parser refused leash's answer (${o.code})`];
    return c.mayCut ? [] : [`the connection was closed without an answer (${o.code})`];
  }
  const problems: string[] = [];
  if (!Number.isInteger(o.status) || o.status < 200 || o.status > 599) problems.push(`status ${o.status}`);
  if (o.reason !== (STATUS_CODES[o.status] ?? 'Unknown')) problems.push(`reason phrase ${JSON.stringify(o.reason)} is not the standard one`);
  if (!o.complete && !c.mayCut) problems.push('the answer was cut');
  const leashError = o.headers['x-leash-error'];
  if (leashError !== undefined && o.status !== 502) problems.push(`leash error ${String(leashError)} with status ${o.status}`);
  switch (c.expect) {
    case 'relay':
      if (leashError !== undefined || o.status !== c.status) problems.push(`expected the upstream's ${c.status}, got ${o.status} ${String(leashError ?? '')}`);
      break;
    case 'refuse':
      if (o.status !== 502 || leashError !== 'leash_upstream_bad_response') problems.push(`expected 502 leash_upstream_bad_response, got ${o.status} ${String(leashError ?? '')}`);
      break;
    case 'leash502':
      if (o.status !== 502 || leashError === undefined) problems.push(`expected a leash 502, got ${o.status}`);
      break;
    case 'any':
      break;
  }
  if (leashError !== undefined && o.complete) {
    let type: unknown;
    try {
      type = (JSON.parse(o.body) as { error: { type: unknown } }).error.type;
    } catch {
      type = undefined;
    }
    if (type !== leashError) problems.push('an x-leash-error header without a leash error body');
  }
  const extra = c.check?.({ headers: o.headers, body: o.body });
  if (extra) problems.push(extra);
  return problems;
}

/**
 * Every case in turn, on route h, b or q, each followed by a normal request that must
 * succeed. `afterCase` may name what went wrong with the sidecar itself (then the run stops).
 */
export async function runCorpus(agent: CorpusAgent, cases: Case[], afterCase?: () => string | undefined): Promise<{ failures: string[]; seconds: number }> {
  const failures: string[] = [];
  const started = performance.now();
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i]!;
    const route = CORPUS_ROUTES[i % CORPUS_ROUTES.length]!;
    const outcome = await agent.request(`/${route}/case/${i}`, c.method);
    for (const p of judge(c, outcome)) failures.push(`#${i} ${c.name} [${route}]: ${p}`);
    const broken = afterCase?.();
    if (broken !== undefined) {
      failures.push(`#${i} ${c.name} [${route}]: ${broken}`);
      break;
    }
    const health = await agent.request('/ok/health');
    if (health.kind !== 'response' || health.status !== 200 || health.body !== 'ok') {
      failures.push(`#${i} ${c.name} [${route}]: the next normal request failed (${JSON.stringify(health).slice(0, 200)})`);
      break;
    }
  }
  return { failures, seconds: (performance.now() - started) / 1000 };
}

/** What corpusBed sets up for a test file: filled in by its beforeAll. */
export interface CorpusBed {
  cases: Case[];
  /** The sidecar routes to the corpus's upstreams (see CorpusUpstreams). */
  routes: Record<string, unknown>;
  /** The agent; its `port` is the file's to set once its sidecar listens. */
  agent: CorpusAgent;
}

/**
 * A corpus test file's set-up, registered as hooks: the corpus and its upstreams for
 * `secret` before all its tests; after them, the agent and the upstreams closed. How the
 * sidecar runs in front of them is the file's (its hooks, registered after these).
 */
export function corpusBed(secret: string): CorpusBed {
  const bed = { agent: new CorpusAgent() } as CorpusBed;
  let upstreams: CorpusUpstreams | undefined;
  beforeAll(async () => {
    upstreams = await startCorpusUpstreams(secret);
    bed.cases = upstreams.cases;
    bed.routes = upstreams.routes;
  });
  afterAll(async () => {
    bed.agent.destroy();
    await upstreams?.close();
  });
  return bed;
}

/** Where the secret shows, in any of its forms: in what the agent received, or in the process output. */
export function secretLeaks(secret: string, agentSaw: string, output: string): string[] {
  const leaks: string[] = [];
  for (const form of secretForms(secret)) {
    if (agentSaw.includes(form)) leaks.push(`the agent received the secret (${form === secret ? 'raw' : 'base64'} form)`);
    if (output.includes(form)) leaks.push(`the process output holds the secret (${form === secret ? 'raw' : 'base64'} form)`);
  }
  return leaks;
}
