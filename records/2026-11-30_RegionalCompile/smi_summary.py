"""Summarise call56_smi.csv (nvidia-smi every 250 ms during call 56): SM clock, power and throttle reasons in
5 s bins from the peak probe's start, and over the samples of the training run at full load (utilisation
>= 95%, power >= 600 W). python3 smi_summary.py [call56_smi.csv] [call56_times.out]"""
import datetime as dt, statistics, sys
csv_path = sys.argv[1] if len(sys.argv) > 1 else "call56_smi.csv"
times = dict(l.split() for l in open(sys.argv[2] if len(sys.argv) > 2 else "call56_times.out"))
t0, run0 = float(times["probe_start"]), float(times["run_start"])
rows = []
for line in open(csv_path):
    p = [x.strip() for x in line.split(",")]
    t = dt.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()
    rows.append(dict(t=t, sm=int(p[1].split()[0]), w=float(p[3].split()[0]), temp=int(p[4]), util=int(p[5].split()[0]),
                     why=int(p[6], 16)))
bins = {}
for r in rows:
    bins.setdefault(int((r["t"] - t0) // 5) * 5, []).append(r)
for k, v in bins.items():
    sm = [r["sm"] for r in v]
    print(f"{k:4d} s  SM {min(sm):4d}-{max(sm):4d} MHz (mean {statistics.mean(sm):5.0f})  power {statistics.mean(r['w'] for r in v):4.0f} W"
          f"  util {statistics.mean(r['util'] for r in v):3.0f}%  throttle reasons {sorted({hex(r['why']) for r in v})}")
full = [r for r in rows if r["t"] >= run0 and r["util"] >= 95 and r["w"] >= 600]
sm = [r["sm"] for r in full]
print(f"training at full load: {len(full)} samples, SM clock mean {statistics.mean(sm):.0f} MHz, median {statistics.median(sm):.0f},"
      f" range {min(sm)}-{max(sm)}; power mean {statistics.mean(r['w'] for r in full):.0f} W;"
      f" SW power cap (0x4) set in {sum(bool(r['why'] & 4) for r in full)} of them")
