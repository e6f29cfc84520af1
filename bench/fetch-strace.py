#!/usr/bin/env python3
"""Where the startup process's time goes per restored segment, from the
strace that `STRACE=MODE bash bench/fetch.sh` leaves in $WORK/strace.txt.

usage: fetch-strace.py STRACE_TXT

Sums, over the startup process only (the first pid in the file), the time
of each kind of call: the fsyncs of RECOVERYXLOG (durable_rename in
KeepFileRestoredFromArchive), of the segment under its own name and of
pg_wal, pg_control's (minimum recovery point updates), the vfork of
restore_command and the wait for it to exit.
"""
import re
import sys

lines = open(sys.argv[1]).read().splitlines()
main = lines[0].split()[0]
fd_path, stats, restored = {}, {}, 0


def add(k, t):
    s = stats.setdefault(k, [0, 0.0])
    s[0] += 1
    s[1] += t


for l in lines:
    if not l.startswith(main + " "):
        continue
    m = re.search(r'openat\(AT_FDCWD, "([^"]+)".*= (\d+) <', l)
    if m:
        fd_path[m.group(2)] = m.group(1)
    m = re.search(r"fsync\((\d+)\).*<([\d.]+)>", l)
    if m:
        p = fd_path.get(m.group(1), "?")
        if "RECOVERYXLOG" in p:
            k = "fsync RECOVERYXLOG"
        elif "pg_control" in p:
            k = "fsync pg_control"
        elif p == "pg_wal":
            k = "fsync pg_wal"
        elif p.startswith("pg_wal/"):
            k = "fsync pg_wal/<segment>"
        else:
            k = "fsync other (start-up sync of the data directory)"
        add(k, float(m.group(2)))
    m = re.search(r"wait4.*resumed.*<([\d.]+)>", l)
    if m:
        add("wait4 (restore_command running)", float(m.group(1)))
    m = re.search(r"clone3?\(.*<([\d.]+)>", l)
    if m:
        add("vfork of restore_command", float(m.group(1)))
    if re.search(r'rename\("pg_wal/RECOVERYXLOG"', l):
        restored += 1
print("%d segments restored" % restored)
print("| %-50s | %5s | %9s | %8s |" % ("call", "count", "total ms", "ms each"))
print("|%s|%s|%s|%s|" % ("-" * 52, "-" * 7, "-" * 11, "-" * 10))
for k, (n, t) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
    print("| %-50s | %5d | %9.1f | %8.2f |" % (k, n, t * 1000, t * 1000 / max(n, 1)))
