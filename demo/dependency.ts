/**
 * The flaky dependency the fleet protects: an HTTP server on a free loopback port, in a
 * process of its own, that the launcher switches between healthy and broken over IPC.
 *
 *   GET /work     what the workers call: 200, or 503 while broken
 *   GET /health   what the lease holder's health check calls: 200, or 503 while broken
 *
 * It tells the launcher how many requests of each kind it has served, so that the
 * dashboard can show that an open circuit spares it everything but the health checks.
 */
import { createServer } from 'node:http';

/** From the launcher. */
export type DependencyCommand = { type: 'set'; healthy: boolean };

/** To the launcher. */
export type DependencyReport =
  | { type: 'listening'; port: number }
  | { type: 'served'; work: number; health: number; healthy: boolean };

const REPORT_INTERVAL_MS = 250;

let healthy = true;
const served = { work: 0, health: 0 };
const send = (report: DependencyReport) => {
  if (process.connected) process.send?.(report);
};

const server = createServer((request, response) => {
  const path = request.url?.split('?')[0];
  if (path === '/work') served.work += 1;
  else if (path === '/health') served.health += 1;
  else {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' }).end(healthy ? 'ok' : 'broken');
});

const reporter = setInterval(() => send({ type: 'served', ...served, healthy }), REPORT_INTERVAL_MS);

process.on('message', (command: DependencyCommand) => {
  if (command.type !== 'set') return;
  healthy = command.healthy;
  send({ type: 'served', ...served, healthy });
});

// The launcher gone (however it ended) is the end of this process too.
process.on('disconnect', () => {
  clearInterval(reporter);
  server.closeAllConnections();
  server.close(() => process.exit(0));
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (typeof address === 'object' && address) send({ type: 'listening', port: address.port });
});
