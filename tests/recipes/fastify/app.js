// A Fastify app on hawkey's listener (fd 3, the socket-activation
// protocol: LISTEN_FDS), with the stop handler Fastify's docs recommend:
// on SIGTERM, fastify.close() stops accepting, finishes in-flight requests
// and closes idle keep-alive connections, then the process exits.
// return503OnClosing: false, or Fastify answers 503 to every request that
// reaches this worker once close() began, even one on a connection it had
// already accepted from the shared listener: under hawkey the new worker
// is already serving, so the old one should just finish what it has.
const fastify = require('fastify')({ logger: false, return503OnClosing: false });

fastify.get('/', async () => `fastify worker ${process.pid}\n`);

process.on('SIGTERM', () => {
  fastify.close().then(() => process.exit(0), () => process.exit(1));
});

const where = process.env.LISTEN_FDS ? { fd: 3 } : { port: Number(process.env.PORT || 3000), host: '127.0.0.1' };
fastify.listen(where).catch((err) => {
  console.error(err);
  process.exit(1);
});
