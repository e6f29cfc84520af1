#!/usr/bin/env python3
"""Medians and ratios of medians from a bench results file.

usage: summary.py RESULTS [A B]...

RESULTS holds lines "NAME   1.50 s [...]", one per tool and round; every
pair A B of tool names prints median(A) / median(B).
"""
import re
import statistics
import sys

times = {}
for line in open(sys.argv[1]):
    if line.startswith("-- medians"):
        break  # a summary printed earlier
    m = re.match(r"(\S.*?)\s+([0-9.]+) s(\s|$)", line.rstrip("\n"))
    if m:
        times.setdefault(m.group(1).strip(), []).append(float(m.group(2)))
med = {k: statistics.median(v) for k, v in times.items()}
print("-- medians")
for k, v in med.items():
    print("%-34s %7.2f s" % (k, v))
print("-- ratios of medians")
pairs = sys.argv[2:]
for a, b in zip(pairs[::2], pairs[1::2]):
    if a in med and b in med:
        print("%-62s %5.2f" % (a + " / " + b, med[a] / med[b]))
