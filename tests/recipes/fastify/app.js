// A Fastify app on hawkey's listener (fd 3, the socket-activation
// protocol: LISTEN_FDS), with a stop handler that drains without losing a
// request:
// - stop accepting with net.Server's close(), not fastify.close() (nor
//   http.Server's close()): since Node 19 those also close every "idle"
//   connection at once, and a connection accepted a moment ago whose
//   request has not been read yet counts as idle: its client gets a reset;
// - answer every request after that with `Connection: close`, so
//   keep-alive clients move to the new workers;
// - exit once no connection is left (idle keep-alive ones end by
//   keepAliveTimeout, 5 s), at most 20 s later.
const net = require('node:net');
const fastify = require('fastify')({ logger: false });

let stopping = false;
fastify.addHook('onRequest', async (request, reply) => {
  if (stopping) reply.header('connection', 'close');
});
fastify.get('/', async () => `fastify worker ${process.pid}\n`);

process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  net.Server.prototype.close.call(fastify.server);
  const deadline = Date.now() + 20_000;
  setInterval(() => {
    fastify.server.getConnections((err, n) => {
      if (err || n === 0 || Date.now() > deadline) process.exit(0);
    });
  }, 50);
});

const where = process.env.LISTEN_FDS ? { fd: 3 } : { port: Number(process.env.PORT || 3000), host: '127.0.0.1' };
fastify.listen(where).catch((err) => {
  console.error(err);
  process.exit(1);
});
