#!/usr/bin/env python3
"""Benchmark the FASTA converter (data/prepare.py) on a folder of FASTA / FASTA.gz files.

Converts every FASTA file under the given paths (default: /work/shared/data/proteins, ~144 MB of
uncompressed FASTA in 211 .gz files) into a temporary folder, once per ``--workers`` value, and
prints for each run:

  * ``MB``: uncompressed input bytes / 1e6 (the text the parser saw, headers included);
  * ``wall_s`` and ``MB/s``: wall-clock time and MB / wall_s;
  * ``cpu_s``: CPU seconds of this process and its (joined) worker processes (user + system);
  * ``MB/cpu_s``: MB per CPU second = throughput per fully used core, independent of how many
    cores were free (other jobs on the machine slow the wall clock, not this number as much);
  * ``MB/s/core``: MB/s divided by the number of processes doing work (workers, +1 for the main
    process when workers > 1 -- it decompresses, assigns splits and writes shards).

``--inflate_only`` also times plain gzip decompression of the same files (zlib; the floor of any
converter reading .gz).  The converted shards are deleted afterwards.  Exit status 0; errors of
the converter (e.g. a binary input file) are raised.

Usage:
  python data/bench_prepare.py                          # workers 1 and all CPUs, hash split, no dedup
  python data/bench_prepare.py --workers 1 2 --dedup --inflate_only
  python data/bench_prepare.py my/fastas --chunk_mb 8
"""

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU seconds of this process plus its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def inflate_only(files: list[Path]) -> tuple[int, float, float]:
    """Decompress every file with prepare's reader; return (bytes, wall s, cpu s)."""
    t0, c0, n = time.time(), cpu_seconds(), 0
    for f in files:
        for block in prepare._raw_blocks(f):
            n += len(block)
    return n, time.time() - t0, cpu_seconds() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("inputs", nargs="*", default=["/work/shared/data/proteins"],
                    help="FASTA files or folders (searched recursively)")
    ap.add_argument("--workers", type=int, nargs="+",
                    default=sorted({1, prepare.default_workers()}),
                    help="worker counts to run, one conversion each")
    ap.add_argument("--chunk_mb", type=float, default=prepare.DEFAULT_CHUNK_BYTES / 2**20)
    ap.add_argument("--dedup", action="store_true", help="convert with --dedup")
    ap.add_argument("--valid_frac", type=float, default=0.01)
    ap.add_argument("--test_frac", type=float, default=0.01)
    ap.add_argument("--inflate_only", action="store_true",
                    help="also time gzip decompression alone")
    args = ap.parse_args(argv)

    files = prepare.expand_inputs(args.inputs)
    if not files:
        ap.error("no FASTA files found")
    disk = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {disk / 1e6:.1f} MB on disk; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} (other jobs share the cores)")
    if args.inflate_only:
        n, wall, cpu = inflate_only(files)
        print(f"inflate only: {n / 1e6:.1f} MB in {wall:.2f} s wall, {cpu:.2f} s cpu: "
              f"{n / 1e6 / wall:.1f} MB/s, {n / 1e6 / cpu:.1f} MB/cpu_s")
    print(f"{'workers':>7} {'MB':>8} {'wall_s':>7} {'MB/s':>7} {'cpu_s':>7} {'MB/cpu_s':>9} "
          f"{'MB/s/core':>9}")
    for w in args.workers:
        with tempfile.TemporaryDirectory(prefix="bench_prepare_") as out:
            t0, c0 = time.time(), cpu_seconds()
            res = prepare.build_shards([(f, None) for f in files], out, "bench",
                                       valid_frac=args.valid_frac, test_frac=args.test_frac,
                                       dedup=args.dedup, workers=w, log=io.StringIO(),
                                       stderr_limit=0,
                                       chunk_bytes=int(args.chunk_mb * 2**20))
            wall, cpu = time.time() - t0, cpu_seconds() - c0
        mb = res.input_bytes / 1e6
        procs = w + (1 if w > 1 else 0)
        print(f"{w:>7} {mb:>8.1f} {wall:>7.2f} {mb / wall:>7.1f} {cpu:>7.2f} {mb / cpu:>9.1f} "
              f"{mb / wall / procs:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
