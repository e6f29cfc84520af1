#!/usr/bin/env python3
"""Issue 16's goals against one `bench/run` (make bench) run.

usage: goals.py OUT

OUT is the run's results directory (bench/run prints it; the newest is
$WORK/results/latest). It reads the tables the run wrote there: push.txt,
startup.txt, fixed.txt, drain.txt, memory.txt, fetch.txt and fetch-calls.txt,
and prints one line per goal: the figure of this run, the goal, and whether
it is met. A file the run skipped (DRAIN=0 and the like) gives "not run".
Nothing here is measured: it only reads what the run measured.
"""
import os
import re
import statistics
import sys


def tables(path):
    """Rows of the Markdown tables in path: lists of cells, separators left out.
    Rows of tables that follow a line starting with a heading are tagged with
    that line (the push tables are headed "pgbench WAL" / "random WAL")."""
    rows, head = [], ""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        s = line.strip()
        if not s.startswith("|"):
            if s:
                head = s
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if all(re.fullmatch(r"[-: ]*", c) for c in cells):
            continue
        rows.append((head, cells))
    return rows


def num(cell):
    """The first number in a cell ("4.86", "19.9 (20.1)", "0.62 [0.61–0.64]")."""
    m = re.search(r"-?[0-9]+(?:\.[0-9]+)?", cell)
    return float(m.group()) if m else None


def find(rows, first, col, head=None, second=None):
    """The number in column col of the row whose first cell is first (and
    whose second is second, and whose heading starts with head)."""
    for h, cells in rows or []:
        if cells[0] != first or len(cells) <= col:
            continue
        if head is not None and not h.startswith(head):
            continue
        if second is not None and (len(cells) < 2 or cells[1] != second):
            continue
        return num(cells[col])
    return None


out = []  # (goal, figure, target, verdict)


def goal(name, figure, target, le, unit="", note=""):
    """A goal met when figure <= le."""
    if figure is None:
        out.append((name, "not run", target, "–"))
        return
    verdict = "met" if figure <= le else "not met"
    out.append((name, f"{figure:.2f}{unit}" + (f" ({note})" if note else ""), target, verdict))


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    d = sys.argv[1]
    p = lambda f: os.path.join(d, f)

    # Goal 1: the fixed cost of one call, started directly (bench/startup.sh).
    st = tables(p("startup.txt"))
    true_ms = find(st, "/bin/true", 1)
    go_ms = find(st, "minimal Go program", 1)
    ref = f"/bin/true {true_ms:.2f}, minimal Go {go_ms:.2f} ms" if true_ms and go_ms else ""
    # The goal reads "≤ 3 ms, against /bin/true and a minimal Go program":
    # on a slow hour /bin/true alone takes more than 1 ms, so a call is
    # judged by its time and by its time above the minimal Go program.
    for call in ("--version", "fetch (missing segment)", "wait (missing .history)", "push (identical re-push)"):
        ms = find(st, "walship " + call, 1)
        if ms is None or not go_ms:
            goal(f"1. walship {call}", None, "≤ 3 ms", 3.0)
            continue
        above = ms - go_ms
        verdict = "met" if ms <= 3 else "met above minimal Go" if above <= 3 else "not met"
        out.append((f"1. walship {call}", f"{ms:.2f} ms ({above:.2f} above minimal Go; {ref})", "≤ 3 ms", verdict))
    fx = tables(p("fixed.txt"))
    goal("1. walship push, identical re-push of 16 MiB (sh -c)", find(fx, "walship push, identical re-push (16 MiB)", 1),
         "≤ 3 ms", 3.0, " ms")

    # Goal 2: push against cp+fsync+rename, ratio of pooled medians.
    pu = tables(p("push.txt"))
    for kind, zlim in (("pgbench", 1.0), ("random", 1.1)):
        cp = find(pu, "cp+fsync", 1, head=kind)
        cpsh = find(pu, "cp-sh", 1, head=kind)
        for tool, lim, label in (("walship-zstd", zlim, "zstd"), ("walship-none", 1.05, "none"),
                                 ("walship-s2", zlim, "s2 (not named by the goal)")):
            m = find(pu, tool, 1, head=kind)
            note = f"{ratio(m, cpsh):.2f} × cp-sh" if ratio(m, cpsh) else ""
            goal(f"2. push {label} / cp+fsync, {kind} WAL", ratio(m, cp), f"≤ {lim:.2f} ×", lim, " ×", note)

    # Goal 3: a 200-segment backlog against pgBackRest async, process-max 2,
    # its fastest compression in this run.
    dr = tables(p("drain.txt"))
    if dr is not None:
        pg = {t: find(dr, t, 1) for t in ("pgbackrest-async-lz4", "pgbackrest-async-zst1", "pgbackrest-async-none")}
        pg = {t: v for t, v in pg.items() if v}
        best_pg = min(pg.items(), key=lambda kv: kv[1]) if pg else None
        ws = [(cells[0], num(cells[1])) for _, cells in dr
              if cells[0].startswith("walship-") and "sftp" not in cells[0] and " / " not in cells[0]
              and num(cells[1])]
        if best_pg and ws:
            t, s = min(ws, key=lambda kv: kv[1])
            goal("3. drain: fastest walship / fastest pgBackRest async", s / best_pg[1], "≤ 0.50 ×", 0.5, " ×",
                 f"{t} {s:.2f} s, {best_pg[0]} {best_pg[1]:.2f} s")
            dflt = find(dr, "walship-zstd", 1)
            goal("3. drain: walship defaults (zstd) / fastest pgBackRest", ratio(dflt, best_pg[1]), "≤ 0.50 ×", 0.5, " ×")
        else:
            goal("3. drain", None, "≤ 0.50 ×", 0.5)
        txt = open(p("drain.txt"), encoding="utf-8").read()
        m = re.search(r"mean of the first third ([0-9.]+), of the last third ([0-9.]+)", txt)
        if m:
            a, b = float(m.group(1)), float(m.group(2))
            out.append(("3. sustained load: segments ready, first → last third", f"{a:.2f} → {b:.2f}",
                        "flat", "met" if b <= a + 1 else "not met"))
    else:
        goal("3. drain", None, "≤ 0.50 ×", 0.5)

    # Goal 4: one fetch call against cp (bench/fetch-calls.sh), and replay.
    fc = tables(p("fetch-calls.txt"))
    for kind in ("pgbench", "random"):
        cp = find(fc, kind, 2, second="cp")
        goal(f"4. one fetch from zstd / cp, {kind} WAL", ratio(find(fc, kind, 2, second="walship fetch, zstd"), cp),
             "≤ 1.30 ×", 1.3, " ×")
        goal(f"4. one fetch from raw / cp, {kind} WAL", ratio(find(fc, kind, 2, second="walship fetch, raw"), cp),
             "≤ 1.10 ×", 1.1, " ×")
        goal(f"4. one fetch from s2 / cp, {kind} WAL (not named by the goal)",
             ratio(find(fc, kind, 2, second="walship fetch, s2"), cp), "≤ 1.30 ×", 1.3, " ×")
    rp = None
    try:
        txt = open(p("fetch.txt"), encoding="utf-8").read()
        med = dict((k.strip(), float(v)) for k, v in re.findall(r"^(\S.*?)\s+([0-9.]+) s$", txt, re.M))
        rp = ratio(med.get("walship fetch"), med.get("cp"))
        floor = ratio(med.get("floor: WAL in pg_wal already"), med.get("cp"))
    except FileNotFoundError:
        floor = None
    goal("4. replay of 1 GB: walship fetch (defaults) / cp", rp, "≤ 0.80 ×", 0.8, " ×",
         f"floor {floor:.2f} ×" if floor else "")

    # Goal 5: peak RSS, MB, the largest median of each call.
    me = tables(p("memory.txt"))
    for call, lim in (("push", 30), ("wait", 30), ("fetch", 30), ("tail", 40)):
        v = [num(cells[2]) for _, cells in me or [] if cells[0].startswith("walship " + call) and num(cells[2])]
        goal(f"5. peak RSS, walship {call} (largest median)", max(v) if v else None, f"≤ {lim} MB", lim, " MB")

    print("Issue 16's goals in this run (bench/goals.py %s)\n" % d)
    print("| goal | this run | target | |")
    print("|---|---|---|---|")
    for r in out:
        print("| %s | %s | %s | %s |" % r)
    n = sum(r[3] != "–" for r in out)
    print("\nmet: %d of %d; met above the minimal Go program only: %d" %
          (sum(r[3] == "met" for r in out), n, sum(r[3] == "met above minimal Go" for r in out)))


main()
