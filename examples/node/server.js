#!/usr/bin/env node
// A Node.js HTTP app run by hawkey (app: exec, ready: notify), using only
// Node's standard library: no npm dependencies, no native modules.
//
// What an app under hawkey does, and where this file does it:
//   1. serve on the inherited listening socket, fd 3 (LISTEN_FDS), never on
//      a port of its own: every worker shares that one socket;
//   2. once accepting, report READY=1 to NOTIFY_SOCKET (with ready: notify);
//   3. on SIGTERM, stop accepting, let in-flight requests finish, close
//      idle keep-alive connections, exit 0 — within hawkey's stop_timeout.
//
// GET /            -> "node worker <slot> pid <pid> generation <gen>\n"
// GET /delay/<ms>  -> the same line after <ms> milliseconds (at most 30000)
// GET /healthz     -> "ok\n"
//
// Runs on Node.js 18.2 or later (Debian 12's nodejs is 18.20).
'use strict';

const http = require('node:http');
const net = require('node:net');
const { spawn } = require('node:child_process');

const slot = process.env.HAWKEY_WORKER ?? '-';
const generation = process.env.HAWKEY_GENERATION ?? '-';
// Node calls listen(2) again on the inherited socket, and that sets the
// queue length every worker shares: keep it at hawkey's listen[].backlog.
const BACKLOG = 1024;
// Graceful stop never takes longer than this; keep it below hawkey's
// workers.stop_timeout (25s by default), after which hawkey sends SIGKILL.
const SHUTDOWN_LIMIT_MS = 20_000;
const MAX_DELAY_MS = 30_000;

function log(message) {
  // stderr: hawkey passes its own (the journal, under systemd).
  console.error(`worker ${slot} (pid ${process.pid}): ${message}`);
}

// 1. The socket. LISTEN_PID names the process the sockets are meant for:
// anything else (a copy of the environment, a child of ours) must not
// touch fd 3.
const listenFds = Number(process.env.LISTEN_FDS);
if (process.env.LISTEN_PID !== String(process.pid) || !(listenFds >= 1)) {
  console.error(
    `server.js: no listening socket was passed to this process ` +
      `(LISTEN_FDS=${process.env.LISTEN_FDS ?? 'unset'}, ` +
      `LISTEN_PID=${process.env.LISTEN_PID ?? 'unset'}, own pid ${process.pid}).\n` +
      `Run it under hawkey (workers.app: exec), which passes the listener at fd 3; ` +
      `it does not open a port of its own.`,
  );
  process.exit(1);
}

let stopping = false;

function answer(res, status, body) {
  // While stopping, close each connection after its response instead of
  // keeping it alive for a next request this worker will not serve.
  if (stopping) res.setHeader('connection', 'close');
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

// Every open connection, and how many requests each has in flight. On
// stop, a connection with none in flight is closed only after it has been
// idle for IDLE_GRACE_MS: a keep-alive client may be sending its next
// request right now, and closing under it would fail that request. The
// next request it sends is answered with `connection: close` (answer()).
const IDLE_GRACE_MS = 1000;
const connections = new Map();

function closeWhenIdle(socket) {
  socket.setTimeout(IDLE_GRACE_MS, () => socket.destroy());
}

const server = http.createServer((req, res) => {
  const socket = req.socket;
  connections.set(socket, (connections.get(socket) || 0) + 1);
  if (stopping) socket.setTimeout(0);
  res.on('finish', () => {
    const left = (connections.get(socket) || 1) - 1;
    if (connections.has(socket)) connections.set(socket, left);
    if (stopping && left === 0) closeWhenIdle(socket);
  });
  const hello = `node worker ${slot} pid ${process.pid} generation ${generation}\n`;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    answer(res, 405, 'method not allowed\n');
    return;
  }
  const path = req.url.split('?')[0];
  const delay = /^\/delay\/(\d+)$/.exec(path);
  if (path === '/') {
    answer(res, 200, hello);
  } else if (path === '/healthz') {
    answer(res, 200, 'ok\n');
  } else if (delay) {
    const ms = Math.min(Number(delay[1]), MAX_DELAY_MS);
    setTimeout(() => answer(res, 200, hello), ms);
  } else {
    answer(res, 404, 'not found\n');
  }
});

server.on('connection', (socket) => {
  connections.set(socket, 0);
  socket.on('close', () => connections.delete(socket));
});

server.on('error', (error) => {
  log(`cannot serve on fd 3: ${error.message}`);
  process.exit(1);
});

// 2. Readiness. Node cannot send a unix datagram by itself, so the
// standard tool does: systemd-notify, run as our child. hawkey credits a
// message to this worker when its sender is the worker or a descendant of
// it, as this child is. Without --no-block it waits until hawkey has
// received the message, so it exits 0 only once the message was delivered.
function notify(args) {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve(true);
  // The listener environment is ours alone, as sd_listen_fds(1) would say.
  const env = { ...process.env };
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok, why) => {
      if (done) return;
      done = true;
      if (!ok) log(`systemd-notify ${args.join(' ')}: ${why}`);
      resolve(ok);
    };
    const child = spawn('systemd-notify', args, {
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 10_000,
    });
    child.on('error', (error) => finish(false, error.message));
    child.on('exit', (code, signal) =>
      finish(code === 0, signal ? `killed by ${signal}` : `exited with status ${code}`),
    );
  });
}

server.listen({ fd: 3, backlog: BACKLOG }, async () => {
  const status = `accepting on fd 3, generation ${generation}`;
  if (!(await notify(['--ready', `--status=${status}`]))) {
    // hawkey will not count this worker as ready: it replaces it after
    // workers.ready_timeout. Say so rather than serve silently.
    log('could not report readiness to hawkey');
  }
});

// 3. Graceful stop: hawkey sends workers.stop_signal (SIGTERM) to our
// process group. SIGINT too, for a run by hand.
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: finishing in-flight requests`);
  // A hard limit, so a stuck request cannot keep the worker forever.
  setTimeout(() => {
    log(`still busy after ${SHUTDOWN_LIMIT_MS} ms, exiting anyway`);
    process.exit(1);
  }, SHUTDOWN_LIMIT_MS).unref();
  // Stop accepting (the socket stays open in the other workers and in
  // hawkey); the callback runs once every connection has closed. net's
  // close, not http's: since Node 19 http's also closes idle keep-alive
  // connections at once, racing a client's next request.
  net.Server.prototype.close.call(server, () => process.exit(0));
  for (const [socket, inFlight] of connections) if (inFlight === 0) closeWhenIdle(socket);
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
