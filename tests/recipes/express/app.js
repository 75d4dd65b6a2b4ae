// An Express app exactly as its users write it: nothing of hawkey in it.
// It binds its own port (PORT, or 3000), has no SIGTERM handler and never
// heard of sd_notify. hawkey adopts its bind (workers.adopt), sees it
// accepting (ready: auto) and drains it on reload (the Node drain shim).
const express = require('express');

const app = express();
app.get('/', (req, res) => res.send(`express worker ${process.pid}\n`));
app.listen(process.env.PORT || 3000);
