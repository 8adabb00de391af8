import { connect, type Socket } from 'node:net';

/**
 * One kept-alive HTTP/1.1 connection, opened now and reused for every request: for tests
 * where the process under test must not need a new descriptor (or a new accept) to answer.
 * Answers are framed by content-length or chunked.
 */
export interface KeptConn {
  socket: Socket;
  /** Writes `METHOD path` and resolves with the status code and body of its answer. */
  request(path: string, method?: string): Promise<{ status: number; body: string }>;
  close(): void;
}

export async function keptConn(port: number): Promise<KeptConn> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => undefined);
  let buf = '';
  const waiting: Array<(answer: { status: number; body: string }) => void> = [];
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (;;) {
      const head = buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const headText = buf.slice(0, head);
      const status = Number(buf.slice(9, 12));
      let body: string;
      if (/\r\ntransfer-encoding: *chunked/i.test(headText)) {
        // Chunked: whole once the last (empty) chunk is in.
        let at = head + 4;
        body = '';
        for (;;) {
          const eol = buf.indexOf('\r\n', at);
          if (eol < 0) return;
          const size = parseInt(buf.slice(at, eol), 16);
          if (buf.length < eol + 2 + size + 2) return;
          body += buf.slice(eol + 2, eol + 2 + size);
          at = eol + 2 + size + 2;
          if (size === 0) break;
        }
        buf = buf.slice(at);
      } else {
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(headText)?.[1] ?? 0);
        if (buf.length < head + 4 + len) return;
        body = buf.slice(head + 4, head + 4 + len);
        buf = buf.slice(head + 4 + len);
      }
      waiting.shift()?.({ status, body });
    }
  });
  return {
    socket,
    request: (path, method = 'GET') =>
      new Promise((resolve) => {
        waiting.push(resolve);
        socket.write(`${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
      }),
    close: () => socket.destroy(),
  };
}
