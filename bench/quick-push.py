#!/usr/bin/env python3
# A quick interleaved push comparison on the inputs make bench prepared
# (/var/tmp/walship-bench): N segments of each kind, R rounds, one process
# call per segment. Usage: make build && N=15 R=3 python3 bench/quick-push.py
import subprocess,time,statistics,os,shutil,glob
B="/var/tmp/walship-bench"
tools={
 "cp+fsync": (None, B+"/bin/cpsync {p} {dir}/{f}"),
 "walship-none": (None, "/work/main/bin/walship --log-level warn push --archive {dir} --compress none {p} {f}"),
 "walship-zstd": (None, "/work/main/bin/walship --log-level warn push --archive {dir} --compress zstd {p} {f}"),
 "pgbackrest-lz4": ("cp -a "+B+"/pgbr-template {dir}", "pgbackrest --config="+B+"/pgbackrest.conf --stanza=bench --repo1-path={dir} --compress-type=lz4 archive-push {p}"),
 "pgbackrest-zst1": ("cp -a "+B+"/pgbr-template {dir}", "pgbackrest --config="+B+"/pgbackrest.conf --stanza=bench --repo1-path={dir} --compress-type=zst --compress-level=1 archive-push {p}"),
}
N=int(os.environ.get("N","15")); R=int(os.environ.get("R","3"))
res={}
for kind in ["pgbench","random"]:
  files=sorted(glob.glob(B+"/src/"+kind+"/*"))[:N]
  for r in range(R):
    for t,(setup,cmd) in tools.items():
      d=B+"/mnt/qb-"+t
      shutil.rmtree(d,ignore_errors=True)
      if setup: subprocess.run(setup.format(dir=d),shell=True,check=True)
      else: os.mkdir(d)
      for p in files:
        f=os.path.basename(p)
        c=cmd.format(p=p,dir=d,f=f)
        t0=time.perf_counter(); rc=subprocess.run(c,shell=True).returncode; ms=(time.perf_counter()-t0)*1000
        assert rc==0,(c,rc)
        res.setdefault((kind,t),[]).append(ms)
      shutil.rmtree(d,ignore_errors=True)
for kind in ["pgbench","random"]:
  base=statistics.median(res[(kind,"cp+fsync")])
  for t in tools:
    m=statistics.median(res[(kind,t)])
    print(f"{kind:8} {t:16} median {m:7.1f} ms  x{m/base:.2f} of cp+fsync")
  for a,b in [("walship-zstd","pgbackrest-lz4"),("walship-zstd","pgbackrest-zst1")]:
    print(f"{kind:8} {a}/{b} = {statistics.median(res[(kind,a)])/statistics.median(res[(kind,b)]):.2f}")
