"""What a run is: its paths, its tag and the sizes of everything, full or
quick. `configure` fixes them once, before anything starts; every other
module reads them from `S` and never from the environment."""

NOISY = 0.10        # a comparison whose IQR / median exceeds this is flagged NOISY


class Settings:
    """The values of one run (see `configure`)."""

    def configure(self, root, out, tag, quick):
        self.root, self.out, self.tag, self.quick = root, out, tag, quick
        self.bin = f"{out}/bin/hawkey"
        self.launcher = f"{out}/bin/bare_launcher"
        self.loadgen = f"{out}/bin/loadgen"
        self.app_js = f"{root}/bench/node/app.js"
        self.work = f"{out}/work"
        # Sizes of everything, full and quick.
        self.pairs = 3 if quick else 7          # at least this many interleaved rounds per comparison
        self.warmup = 0.5 if quick else 1.0     # s, not counted
        self.duration = 1.5 if quick else 3.0   # s, counted
        self.threads = {"keepalive": 8, "close": 4}
        self.idle_s = 15 if quick else 60       # P4 window
        self.p3_counts = [1, 2, 8, 64, 256]
        self.respawns = 5000                    # memory marked at 100, 1000, 2000, ... 5000
        self.p5_reps = 3 if quick else 7
        self.p6_kills = 8 if quick else 20
        self.p7_reloads = 5 if quick else 20
        self.p10_reloads = 5 if quick else 20   # per mode and manager (P10, against PM2)
        # loadgen's keep-alive mode ignores a response's Connection: close (its
        # next request on that connection fails), so keep-alive reloads are
        # also measured with wrk, which reconnects as a client must.
        self.p10_modes = ("close", "keepalive", "wrk")
        self.g13_slowest = 10                   # files timed again, ...
        self.g13_reps = 3 if quick else 7       # ... this many times each, median
        self.scale_counts = [2, 64, 256]        # issue #11's pools, builtin and exec'd
        self.scale_rounds = 3 if quick else 7   # at most this many rounds of each, interleaved ...
        self.scale_budget_s = 120 if quick else 600     # ... and no new round after this long
        self.hostile_workers = 256              # the pool the hostile senders aim at
        self.hostile_datagrams = 10000          # per sender
        self.hostile_fds = 9                    # SCM_RIGHTS fds per datagram (the old leak: 8 of 9)
        return self

    def binaries(self):
        return [self.bin, self.launcher, self.loadgen]


S = Settings()      # configured by cli.main before any part runs

