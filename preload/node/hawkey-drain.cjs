// hawkey-drain: drains a Node.js app that does not drain itself.
//
// Loaded before the app by `NODE_OPTIONS=--require /path/hawkey-drain.cjs`
// (hawkey sets that for exec'd workers). It changes nothing until the
// worker's stop signal (HAWKEY_STOP_SIGNAL, SIGTERM by default) arrives.
// Then, and only if the app has no handler of its own for that signal at
// that moment, it drains the servers the app created:
//
//   1. stops accepting: net.Server.prototype.close on each (not http's
//      close, which since Node 19 also closes idle connections at once);
//      connections still queued stay with the shared socket for the other
//      workers;
//   2. lets in-flight requests finish;
//   3. answers the next request on each open connection with
//      `Connection: close` (and closes the connection after it);
//   4. closes a connection with no request in flight once it has been idle
//      for IDLE_GRACE_MS (from its last response or from the signal,
//      whichever is later), so that a keep-alive client sending its next
//      request right then gets an answer, not a reset;
//   5. exits 0 once every connection is closed (apps often keep timers or
//      pools alive, so waiting for the event loop to empty would wait
//      forever).
//
// With no server (the app created none, or closed them all) it does what
// Node does without a handler: the signal's default action. Listeners of
// signal-exit, which defer to that default, do not count as the app's.
//
// Connections the app upgraded (WebSocket, CONNECT) are closed after the
// grace period like idle ones. Plain `net` servers (not HTTP) stop
// accepting, and their connections, which have no requests to tell idle
// from busy, are closed after the grace period too.
//
// Plain CommonJS, no dependencies, Node 18 and later. It never throws into
// the app: every step is guarded, and a failure leaves the app as it was.
'use strict';

(function hawkeyDrain() {
  /** How long an idle connection is kept open once draining (ms). */
  const IDLE_GRACE_MS = 1000;

  // Once per process, whichever copy comes first: two copies (required
  // from two paths) would each take the other's listener for the app's.
  const loaded = Symbol.for('hawkey.drain');
  if (process[loaded]) return;
  process[loaded] = true;

  let net;
  try {
    net = require('node:net');
  } catch (_) {
    return;
  }
  const signal = process.env.HAWKEY_STOP_SIGNAL || 'SIGTERM';

  /** Servers the app listens with. */
  const servers = new Set();
  /** Open connections of those servers -> { busy, idleSince, timer }. */
  const connections = new Map();
  let draining = false;
  let drainStarted = 0;
  let handlerInstalled = false;

  function guard(fn) {
    return function guarded(...args) {
      try {
        return fn.apply(this, args);
      } catch (_) {
        return undefined;
      }
    };
  }

  // 1. Track every server the app starts listening with.
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function hawkeyListen(...args) {
    guard(track)(this);
    return listen.apply(this, args);
  };

  function track(server) {
    if (servers.has(server)) return;
    servers.add(server);
    installHandler();
    // A TLS server's requests come on the TLS socket, not the TCP one
    // (tls is loaded only now: an app that never listens does not pay).
    const event = server instanceof require('node:tls').Server ? 'secureConnection' : 'connection';
    server.on(event, guard(onConnection));
    // Before the app's own listener: the response is marked before it writes.
    server.prependListener('request', guard(onRequest));
    // No 'upgrade' or 'connect' listener: having one changes what Node does
    // with such requests. An upgraded connection never has a request in
    // flight here, so a drain closes it after the grace, like an idle one.
    server.on('close', guard(() => {
      servers.delete(server);
      maybeExit();
    }));
  }

  function onConnection(socket) {
    const state = { busy: 0, idleSince: Date.now(), timer: null };
    connections.set(socket, state);
    socket.on('close', guard(() => forget(socket)));
    if (draining) scheduleIdleClose(socket, state);
  }

  function onRequest(req, res) {
    const state = connections.get(req.socket);
    if (!state) return;
    state.busy += 1;
    if (state.timer) {
      clearTimeout(state.timer);
      state.timer = null;
    }
    // Draining: this answer is the connection's last, and says so.
    if (draining) closeAfter(res);
    let done = false;
    const finished = guard(() => {
      if (done) return;
      done = true;
      state.busy -= 1;
      state.idleSince = Date.now();
      if (draining && connections.has(req.socket)) scheduleIdleClose(req.socket, state);
    });
    res.on('finish', finished);
    res.on('close', finished);
  }

  /** Makes `res` end its connection: `Connection: close`, then close. */
  function closeAfter(res) {
    if (!res.headersSent) res.shouldKeepAlive = false;
  }

  function forget(socket) {
    const state = connections.get(socket);
    if (!state) return;
    if (state.timer) clearTimeout(state.timer);
    connections.delete(socket);
    maybeExit();
  }

  /** Closes `socket` once idle for the grace period, unless a request comes. */
  function scheduleIdleClose(socket, state) {
    if (state.busy > 0) return;
    if (state.timer) clearTimeout(state.timer);
    const closeAt = Math.max(state.idleSince, drainStarted) + IDLE_GRACE_MS;
    state.timer = setTimeout(guard(() => {
      state.timer = null;
      if (state.busy > 0) return;
      socket.destroy();
    }), Math.max(0, closeAt - Date.now()));
  }

  // 2. The stop signal.
  function installHandler() {
    if (handlerInstalled) return;
    try {
      process.on(signal, onSignal);
      handlerInstalled = true;
    } catch (_) {
      // A signal Node cannot catch (SIGKILL): nothing to drain on.
    }
  }

  /**
   * How many of the signal's listeners are the app's own. signal-exit (a
   * common dependency: write-file-atomic, execa, ...) listens too, but acts
   * only when its listeners are the only ones, and then re-raises the
   * signal: it defers to the default action, so it is not a handler of the
   * app's. It counts its listeners in `process.__signal_exit_emitter__`.
   */
  function appHandlers() {
    let count = process.listeners(signal).filter((l) => l !== onSignal).length;
    const signalExit = process.__signal_exit_emitter__;
    if (signalExit && typeof signalExit.count === 'number') count -= signalExit.count;
    return count;
  }

  function onSignal() {
    try {
      // The app drains itself: leave it alone.
      if (appHandlers() > 0) return;
      if (draining) return;
      if (servers.size === 0) {
        defaultAction();
        return;
      }
      startDrain();
    } catch (_) {
      defaultAction();
    }
  }

  /** What Node does with no handler: the signal's default action. */
  function defaultAction() {
    try {
      process.removeListener(signal, onSignal);
      handlerInstalled = false;
      process.kill(process.pid, signal);
    } catch (_) {
      process.exit(1);
    }
  }

  function startDrain() {
    draining = true;
    drainStarted = Date.now();
    for (const server of servers) {
      try {
        // net's close: stop accepting, nothing more.
        net.Server.prototype.close.call(server);
      } catch (_) {
        // Not listening any more: nothing to stop.
      }
    }
    for (const [socket, state] of connections) {
      try {
        for (const res of pendingResponses(socket)) closeAfter(res);
        scheduleIdleClose(socket, state);
      } catch (_) {
        // Leave this connection as it is.
      }
    }
    maybeExit();
  }

  /** Responses in flight on `socket` (http keeps them on the socket). */
  function pendingResponses(socket) {
    const out = [];
    if (socket._httpMessage) out.push(socket._httpMessage);
    return out;
  }

  function maybeExit() {
    if (!draining) return;
    if (connections.size > 0) return;
    process.exit(0);
  }
})();
