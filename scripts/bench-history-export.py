#!/usr/bin/env python3
"""Memory and speed of `censorprobe history` and `censorprobe export --format parquet`
as the input grows: both stream their reports, so peak RSS must stay flat while the
input grows tenfold.

Builds synthetic daily reports from the example report (reports/examples/lab-demo.jsonl):
each day is a copy of its target records with the domains renamed (`NAMES` distinct
domains per day) and the times moved to that day, two vantages. At 10x every day's report
is there ten times (repeated scans or shards of the same days): the input grows tenfold,
the output (per domain, vantage and day) does not. Runs each command on both under
/usr/bin/time -v and prints input size, wall time, peak RSS and records per second.

    cargo build --release
    python3 scripts/bench-history-export.py [--days 3] [--names 2000] [--bin target/release/censorprobe]

Needs nothing but the binary and GNU time; no network.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example():
    header, targets = None, []
    with open(os.path.join(ROOT, "reports/examples/lab-demo.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record["record"] == "header":
                header = record
            elif record["record"] == "target":
                targets.append(line.rstrip("\n"))
    return header, targets


def write_day(path, header, targets, day, names, vantage):
    stamp = f"2026-01-{day + 1:02d}T00:00:00Z" if day < 28 else f"2026-02-{day - 27:02d}T00:00:00Z"
    date = stamp[:10]
    header = dict(header, started_at=stamp, vantage=vantage)
    with open(path, "w") as out:
        out.write(json.dumps(header) + "\n")
        written = 0
        copy = 0
        while written < names:
            for line in targets:
                if written >= names:
                    break
                # Rename the domain (distinct per copy) and move the start to this day.
                text = re.sub(r'"domain":"([^"]+)"', lambda m: f'"domain":"c{copy}-{m.group(1)}"', line, count=1)
                text = re.sub(r'"started_at":"\d{4}-\d{2}-\d{2}', f'"started_at":"{date}', text, count=1)
                out.write(text + "\n")
                written += 1
            copy += 1


def measure(cmd):
    start = time.monotonic()
    run = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if run.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{run.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return wall, rss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="days of reports (10x measures each ten times)")
    parser.add_argument("--names", type=int, default=2000, help="target records per day")
    parser.add_argument("--bin", default=os.path.join(ROOT, "target/release/censorprobe"))
    args = parser.parse_args()
    header, targets = load_example()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'command':<10} {'scale':>5} {'days':>5} {'records':>8} {'input MB':>9} {'wall s':>7} {'peak RSS MiB':>13} {'records/s':>10}")
        for scale in (1, 10):
            # 10x: the same days, domains and vantages measured ten times over (repeated
            # scans, shards), so the output is the same size and only the input grows.
            days = args.days
            folder = os.path.join(tmp, f"x{scale}")
            os.makedirs(folder)
            for day in range(days):
                first = os.path.join(folder, f"day{day:03d}-0.jsonl")
                write_day(first, header, targets, day, args.names, f"vantage-{day % 2}")
                for repeat in range(1, scale):
                    shutil.copyfile(first, os.path.join(folder, f"day{day:03d}-{repeat}.jsonl"))
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6
            records = days * args.names * scale
            for name, cmd in (
                ("history", [args.bin, "history", "-q", "--format", "csv", "-o", os.path.join(tmp, "h.csv"), folder]),
                ("export", [args.bin, "export", "-q", "--format", "parquet", "--out", os.path.join(tmp, "e.parquet"), folder]),
            ):
                wall, rss = measure(cmd)
                print(f"{name:<10} {scale:>4}x {days:>5} {records:>8} {size:>9.1f} {wall:>7.2f} {rss:>13.1f} {records / wall:>10.0f}")


if __name__ == "__main__":
    main()
