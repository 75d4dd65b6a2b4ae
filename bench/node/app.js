'use strict';
// bench/node/app.js — the Node.js app of bench/run.sh (P1, P2 in docs/goals.md).
//
// One request handler, three ways to get connections:
//  - LISTEN_FDS set (under hawkey `app: exec`, or bench's bare_launcher):
//    listen on the inherited socket, fd 3, shared with the other workers;
//    the worker id is HAWKEY_WORKER.
//  - otherwise, as a Node `cluster` primary on PORT with WORKERS workers
//    (default: one per CPU) and cluster.schedulingPolicy from NODE_SCHED:
//    `rr` (SCHED_RR, Node's default on Linux: the primary accepts every
//    connection and hands it to a worker over IPC) or `none` (SCHED_NONE:
//    the workers share the primary's socket and accept themselves).
//
// GET / answers "node worker <id> pid <pid>\n"; GET /healthz "ok\n";
// anything else 404. SIGTERM: stop accepting, close idle keep-alive
// connections, exit once in-flight requests are done.
// Node's stdlib only.

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const BACKLOG = 1024; // hawkey's default listen[].backlog

function serve(listenOptions, id) {
  const pid = process.pid;
  const index = Buffer.from(`node worker ${id} pid ${pid}\n`);
  const ok = Buffer.from('ok\n');
  const notFound = Buffer.from('not found\n');
  const server = http.createServer((req, res) => {
    let body = notFound;
    let status = 404;
    if (req.url === '/') {
      body = index;
      status = 200;
    } else if (req.url === '/healthz') {
      body = ok;
      status = 200;
    }
    res.writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': body.length,
    });
    res.end(body);
  });
  server.listen({ ...listenOptions, backlog: BACKLOG });
  process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}

if (process.env.LISTEN_FDS) {
  if (process.env.LISTEN_PID && Number(process.env.LISTEN_PID) !== process.pid) {
    console.error(`LISTEN_PID ${process.env.LISTEN_PID} is not this process (${process.pid})`);
    process.exit(1);
  }
  serve({ fd: 3 }, process.env.HAWKEY_WORKER ?? '0');
} else if (cluster.isPrimary) {
  const policy = (process.env.NODE_SCHED || 'rr').toLowerCase();
  // Must be set before the first fork.
  cluster.schedulingPolicy = policy === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  const workers = Number(process.env.WORKERS) || os.availableParallelism();
  for (let i = 0; i < workers; i++) cluster.fork({ NODE_WORKER_ID: String(i) });
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === workers) console.error(`cluster primary ${process.pid}: ${workers} workers listening, policy ${policy}`);
  });
  let stopping = false;
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`cluster worker ${worker.process.pid} exited (${signal || code})`);
    if (Object.keys(cluster.workers).length === 0 && stopping) process.exit(0);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 5000).unref();
  });
} else {
  serve({ port: Number(process.env.PORT) || 8080, host: '127.0.0.1' }, process.env.NODE_WORKER_ID ?? '0');
}
