import type { IncomingMessage } from 'node:http';
import { BadRequestError, DeniedError, type LeashHttpError } from '../../core/errors.js';
import type { RequestContext } from './passes.js';

/**
 * The request-body phase: opt-in per route (RouteRuntime.bodyFilters), for policy that
 * reads what a request says rather than where it goes (a JSON-RPC `tools/call` naming a
 * tool, for MCP-aware rules). A route without body filters never runs it: its bodies
 * stream to the upstream untouched, at no cost.
 *
 * When a route has filters, the body is read as it arrives: each chunk goes to every
 * filter's `chunk` (a filter may refuse early), bounded by the smallest `maxBytes` of the
 * route's filters; then each `end` sees the whole body. Only if every filter accepts does
 * the request leave, with exactly the bytes read, framed by leash (`content-length`).
 * Fail closed: a body larger than a filter can read is refused (`leash_denied`: what
 * cannot be inspected cannot be allowed), and one that stops arriving for the route's idle
 * timeout is refused too (`leash_bad_request`), as is a filter that throws or does not give
 * its verdict within that timeout (`leash_denied`).
 */
export interface RequestBodyFilter {
  readonly name: string;
  /** The most this filter reads; a longer body is refused before it is all read. */
  readonly maxBytes: number;
  /** Each chunk as it arrives; an error refuses the request at once. */
  chunk?(chunk: Buffer, ctx: RequestContext): LeashHttpError | undefined;
  /** The whole body, once every chunk has arrived; an error refuses the request. */
  end(body: Buffer, ctx: RequestContext): LeashHttpError | undefined | Promise<LeashHttpError | undefined>;
}

export type BodyOutcome = { body: Buffer } | { refused: LeashHttpError } | { gone: true };

/**
 * Reads the request body through `filters` (see above). Resolves once: with the body, a
 * refusal (the caller answers it and closes the connection: the rest of the body is
 * unread), or `gone` when the agent went away first.
 */
export function readRequestBody(req: IncomingMessage, ctx: RequestContext, filters: readonly RequestBodyFilter[], idleMs: number): Promise<BodyOutcome> {
  const limit = Math.min(...filters.map((f) => f.maxBytes));
  return new Promise<BodyOutcome>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (outcome: BodyOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', onClose);
      resolve(outcome);
    };
    const timer = setTimeout(() => settle({ refused: new BadRequestError('the request body stopped arriving', { route: ctx.route?.name }) }), idleMs);
    const onData = (chunk: Buffer) => {
      timer.refresh();
      size += chunk.length;
      if (size > limit) {
        req.pause();
        return settle({ refused: new DeniedError(`the request body is larger than this route inspects (${limit} bytes)`, { route: ctx.route?.name }) });
      }
      let err: LeashHttpError | undefined;
      try {
        for (const f of filters) if ((err = f.chunk?.(chunk, ctx))) break;
      } catch {
        err = uninspectable(ctx);
      }
      if (err) {
        req.pause();
        return settle({ refused: err });
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      if (settled) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      settled = true;
      clearTimeout(timer);
      req.off('data', onData).off('close', onClose).off('error', onClose);
      // A filter's verdict is bounded like the body was: one that never settles refuses the
      // request after the idle timeout instead of holding the agent's connection for ever.
      const deadline = setTimeout(() => resolve({ refused: uninspectable(ctx) }), idleMs);
      void endAll(filters, body, ctx)
        .then(
          (refused): BodyOutcome => (refused ? { refused } : { body }),
          (): BodyOutcome => ({ refused: uninspectable(ctx) }),
        )
        .then((outcome) => {
          clearTimeout(deadline);
          resolve(outcome);
        });
    };
    // 'close' before 'end': the agent went away (or the connection broke) mid-body.
    const onClose = () => settle({ gone: true });
    req.on('data', onData).once('end', onEnd).once('close', onClose).once('error', onClose);
  });
}

/** A filter that throws refuses the request (fail closed); what it threw is not quoted (it may hold the body). */
const uninspectable = (ctx: RequestContext) => new DeniedError('the request body could not be inspected', { route: ctx.route?.name });

async function endAll(filters: readonly RequestBodyFilter[], body: Buffer, ctx: RequestContext): Promise<LeashHttpError | undefined> {
  for (const f of filters) {
    const err = await f.end(body, ctx);
    if (err) return err;
  }
  return undefined;
}
