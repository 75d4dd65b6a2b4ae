"""The printed table: one row per figure, (goal, figure, value, target,
verdict, method); each goal's module makes its own rows with these."""


def verdict(ok):
    return "met" if ok else "MISSED"


def pair_str(c):
    s = f"{c['median']:.3f} [{c['min']:.3f}-{c['max']:.3f}]"
    return s + (" NOISY" if c["noisy"] else "")


def print_table(rows):
    head = ("goal", "figure", "value", "target", "verdict", "method")
    w = [max([len(str(r[i])) for r in rows] + [len(head[i])]) for i in range(6)]

    def fmt(r):
        return "  ".join(str(r[i]).ljust(w[i]) for i in range(6)).rstrip()
    print(fmt(head))
    print(fmt(["-" * x for x in w]))
    for r in rows:
        print(fmt(r))
    return rows
