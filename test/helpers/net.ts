// A free TCP port on loopback, for servers a test starts in another process.

import { createServer, type Socket } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * After the server's FIN: whether the server has closed its side for good. A half-closed server
 * still reads what the client sends; a closed one answers it with a reset.
 */
export async function closedForGood(socket: Socket): Promise<boolean> {
  await new Promise((r) => setTimeout(r, 1500));
  return new Promise((resolve) => {
    socket.once('error', () => resolve(true));
    socket.write('more\r\n');
    setTimeout(() => {
      // A second write sees the reset of the first when the server is gone.
      if (!socket.destroyed) socket.write('more\r\n');
      setTimeout(() => resolve(socket.destroyed), 500);
    }, 300);
  });
}
