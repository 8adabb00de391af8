import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * The real vendor SDKs, pointed at leash with a dummy key of their own: leash must
 * inject the real credential in the vendor's header, stream their SSE formats through,
 * and hand their error parser a body it can still read — minus the secret.
 */
const OPENAI_SECRET = 'sk-abcQ7rT2mN9pL4vX8kJ3hF6dS1gwxyz';
const OPENAI_MASKED = `${OPENAI_SECRET.slice(0, 6)}*****${OPENAI_SECRET.slice(-4)}`; // sk-abc*****wxyz
const ANTHROPIC_SECRET = 'sk-ant-api03-Zq8Wm2Lp5Rt7Yx1Cv4Bn6Mk9Jh3Gf0Dsa';
const AGENT_OPENAI_KEY = 'sk-agent-dummy-openai';
const AGENT_ANTHROPIC_KEY = 'sk-ant-agent-dummy';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

let seen: Seen[] = [];
let openaiUp: Upstream;
let anthropicUp: Upstream;
let leash: RunningSidecar;
let openai: OpenAI;
let anthropic: Anthropic;

function record(req: IncomingMessage): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: text ? JSON.parse(text) : undefined };
      seen.push(s);
      resolve(s);
    });
  });
}

function sse(res: ServerResponse, events: string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const e of events) res.write(e);
  res.end();
}

const chunk = (content: string | null, finish: string | null = null) =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1700000000,
    model: 'gpt-test',
    choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
  })}\n\n`;

async function openaiHandler(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const s = await record(req);
  const body = s.body as { stream?: boolean; model?: string };
  res.setHeader('x-request-id', 'req_123');
  if (body.model === 'bad-key') {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        error: {
          message: `Incorrect API key provided: ${OPENAI_SECRET}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      }),
    );
    return;
  }
  if (body.model === 'bad-key-masked') {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        error: {
          message: `Incorrect API key provided: ${OPENAI_MASKED}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      }),
    );
    return;
  }
  if (body.stream) {
    sse(res, [chunk(''), chunk('Hel'), chunk('lo, '), chunk('world'), chunk(null, 'stop'), 'data: [DONE]\n\n']);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1700000000,
      model: 'gpt-test',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello through leash' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    }),
  );
}

const aEvent = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

async function anthropicHandler(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const s = await record(req);
  const body = s.body as { stream?: boolean };
  const message = {
    id: 'msg_01',
    type: 'message',
    role: 'assistant',
    model: 'claude-test',
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 5, output_tokens: 1 },
  };
  if (body.stream) {
    sse(res, [
      aEvent('message_start', { message: { ...message, content: [] } }),
      aEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      aEvent('ping', {}),
      aEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Stream' } }),
      aEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'ed via ' } }),
      aEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'leash' } }),
      aEvent('content_block_stop', { index: 0 }),
      aEvent('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 3 } }),
      aEvent('message_stop', {}),
    ]);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_a1' });
  res.end(JSON.stringify({ ...message, content: [{ type: 'text', text: 'Plain via leash' }], stop_reason: 'end_turn' }));
}

beforeAll(async () => {
  openaiUp = await startUpstream((req, res) => void openaiHandler(req, res));
  anthropicUp = await startUpstream((req, res) => void anthropicHandler(req, res));
  leash = await startSidecar(
    {
      routes: {
        openai: {
          upstream: openaiUp.url,
          credential: { env: 'OPENAI_KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['POST /v1/chat/completions'],
        },
        anthropic: {
          upstream: anthropicUp.url,
          credential: { env: 'ANTHROPIC_KEY' },
          inject: { header: 'x-api-key' },
          allow: ['POST /v1/messages'],
        },
      },
    },
    { env: { OPENAI_KEY: OPENAI_SECRET, ANTHROPIC_KEY: ANTHROPIC_SECRET } },
  );
  openai = new OpenAI({ apiKey: AGENT_OPENAI_KEY, baseURL: `${leash.url}/openai/v1`, maxRetries: 0, timeout: 5_000 });
  anthropic = new Anthropic({ apiKey: AGENT_ANTHROPIC_KEY, baseURL: `${leash.url}/anthropic`, maxRetries: 0, timeout: 5_000 });
});

afterAll(async () => {
  await leash?.stop();
  await openaiUp?.close();
  await anthropicUp?.close();
});

beforeEach(() => {
  seen = [];
});

function expectOpenAiCredential(s: Seen): void {
  expect(s.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
  expect(JSON.stringify(s.headers)).not.toContain(AGENT_OPENAI_KEY);
  expect(s.headers['x-api-key']).toBeUndefined();
}

function expectAnthropicCredential(s: Seen): void {
  expect(s.headers['x-api-key']).toBe(ANTHROPIC_SECRET);
  expect(s.headers.authorization).toBeUndefined();
  expect(JSON.stringify(s.headers)).not.toContain(AGENT_ANTHROPIC_KEY);
}

describe('openai SDK through leash', () => {
  it('chat.completions.create (non-streaming) gets the answer; upstream saw only the injected key', async () => {
    const completion = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.choices[0]!.message.content).toBe('Hello through leash');
    expect(completion.usage?.total_tokens).toBe(7);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe('POST');
    expect(seen[0]!.url).toBe('/v1/chat/completions');
    expect(seen[0]!.body).toMatchObject({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });
    expectOpenAiCredential(seen[0]!);
  });

  it('chat.completions.create with stream: true yields every SSE chunk and ends at [DONE]', async () => {
    const stream = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const deltas: string[] = [];
    let finish: string | null = null;
    for await (const c of stream) {
      const choice = c.choices[0]!;
      if (choice.delta.content !== undefined && choice.delta.content !== null) deltas.push(choice.delta.content);
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    expect(deltas).toEqual(['', 'Hel', 'lo, ', 'world']);
    expect(finish).toBe('stop');
    expect(seen).toHaveLength(1);
    expect((seen[0]!.body as { stream: boolean }).stream).toBe(true);
    expectOpenAiCredential(seen[0]!);
  });

  it('20 concurrent SDK calls over the pooled keep-alive connections all carry the credential', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: `n${i}` }] })),
    );
    expect(answers.every((a) => a.choices[0]!.message.content === 'Hello through leash')).toBe(true);
    expect(seen).toHaveLength(20);
    for (const s of seen) expectOpenAiCredential(s);
  });

  it('an upstream 401 echoing the key becomes AuthenticationError without the key', async () => {
    const err = await openai.chat.completions.create({ model: 'bad-key', messages: [{ role: 'user', content: 'hi' }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const auth = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect(auth.status).toBe(401);
    // The SDK still parsed OpenAI's error shape: the body was rewritten, not replaced.
    expect(auth.message).toContain('Incorrect API key provided:');
    expect(auth.message).toContain('[REDACTED]');
    expect(auth.code).toBe('invalid_api_key');
    const everything = `${auth.message} ${JSON.stringify(auth.error)} ${JSON.stringify(Object.fromEntries(auth.headers?.entries() ?? []))}`;
    expect(everything).not.toContain(OPENAI_SECRET);
    expect(everything).not.toContain(OPENAI_MASKED);
    expect(everything).not.toContain(OPENAI_SECRET.slice(-12));
    expectOpenAiCredential(seen[0]!);
  });

  it('the masked form OpenAI really sends (sk-abc*****wxyz) is scrubbed too', async () => {
    expect(OPENAI_MASKED).toBe('sk-abc*****wxyz');
    const err = await openai.chat.completions.create({ model: 'bad-key-masked', messages: [{ role: 'user', content: 'hi' }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const auth = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect(auth.message).toContain('Incorrect API key provided:');
    expect(auth.message).toContain('[REDACTED]');
    expect(auth.message).not.toContain(OPENAI_MASKED);
    expect(auth.message).not.toContain('*****');
    expect(auth.message).not.toContain('wxyz');
    expect(JSON.stringify(auth.error)).not.toContain(OPENAI_MASKED);
  });
});

describe('anthropic SDK through leash (x-api-key injection)', () => {
  it('messages.create (plain) returns the message; upstream saw the injected x-api-key only', async () => {
    const msg = await anthropic.messages.create({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    expect(msg.id).toBe('msg_01');
    expect(msg.content).toEqual([{ type: 'text', text: 'Plain via leash' }]);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe('/v1/messages');
    expect(seen[0]!.headers['anthropic-version']).toBeTruthy();
    expectAnthropicCredential(seen[0]!);
  });

  it('messages.create with stream: true delivers message_start … content_block_delta … message_stop', async () => {
    const stream = await anthropic.messages.create({
      model: 'claude-test',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    expect(types[0]).toBe('message_start');
    expect(types.at(-1)).toBe('message_stop');
    expect(types.filter((t) => t === 'content_block_delta')).toHaveLength(3);
    expect(text).toBe('Streamed via leash');
    expectAnthropicCredential(seen[0]!);
  });

  it('messages.stream() helper assembles the final message', async () => {
    const final = await anthropic.messages.stream({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).finalMessage();
    expect(final.content).toEqual([expect.objectContaining({ type: 'text', text: 'Streamed via leash' })]);
    expect(final.stop_reason).toBe('end_turn');
    expectAnthropicCredential(seen[0]!);
  });
});
