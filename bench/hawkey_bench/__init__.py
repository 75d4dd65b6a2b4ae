"""hawkey's benchmarks: the performance goals P1-P8 (docs/goals.md), G13's time
and memory half and issue #11's scale figures, measured on loopback and
printed as a table with the method beside each figure; every raw figure
also goes to results.json.
BENCHMARKS.md has the method and the reading; bench/run.sh builds the
binaries and runs this.

    python3 bench/hawkey_bench --help

Parts, one module per role:
    cli         flags and BENCH_* variables, the order of the parts, the summary
    settings    what a run is: paths, tag, sizes (full or quick), fixed once
    procs       tagged processes, stopped at exit; /proc readers; waiting
    notify      a NOTIFY_SOCKET that keeps the kernel's receive timestamps
    servers     hawkey, bare_launcher and the Node `cluster` primary, set up
    load        loadgen runs and interleaved, rotating comparisons
    table       the printed table and its verdicts
    throughput  P1 data path, P2 against Node `cluster`, P8 balance
    memory      P3 master memory, P4 idle master
    start       P5 start -> READY=1
    respawn     P6 kill -9 -> replacement (perf split)
    reload      P7 reloads under load
    corpus      G13 malformed configs: time, memory, exit 78
    scale       issue #11: 2-256 workers (start, reload, RSS, CPU); hostile notify senders
"""
