#!/usr/bin/env python3
"""Reads a Parquet file written by `censorprobe export --format parquet` with pyarrow (an
independent reader: Arrow's C++ Parquet implementation) and checks it against what the
caller expects, given as JSON (a file path, or `-` for stdin):

    {
      "rows": 97,                         # total rows
      "min_row_groups": 2,                # the file was written in several row groups
      "types": {"stage": "dictionary<values=string, indices=int32, ordered=0>", ...},
      "count_by": {"stage": {"dns": 40, "http": 28, "tls": 29}},
      "rows_where": [                     # each: rows matching `where`, and their values
        {"where": {"domain": "x", "stage": "dns"}, "count": 2,
         "values": {"verdict": "dns_poisoning", "target_started_at": 1796...}}
      ]
    }

Timestamps compare as integer microseconds since the epoch, lists as lists. Exit status
0 when everything holds, 1 with every difference listed, 2 when pyarrow is missing or the
file cannot be read (the caller's test must fail then, not skip).
"""

import json
import sys
from collections import Counter


def main():
    if len(sys.argv) != 3:
        print("usage: check-parquet.py FILE.parquet EXPECTED.json|-", file=sys.stderr)
        return 2
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        print(f"check-parquet: pyarrow is not installed ({error}); run .ci/install-deps",
              file=sys.stderr)
        return 2
    path, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(sys.stdin if expected_path == "-" else open(expected_path))
    try:
        parquet = pq.ParquetFile(path)
        table = parquet.read()
    except Exception as error:  # any reader failure is a failed check
        print(f"check-parquet: cannot read {path}: {error}", file=sys.stderr)
        return 2

    problems = []
    schema = table.schema
    for name, wanted in expected.get("types", {}).items():
        if name not in schema.names:
            problems.append(f"column {name} missing")
        elif str(schema.field(name).type) != wanted:
            problems.append(f"column {name}: type {schema.field(name).type}, expected {wanted}")
    if "columns" in expected and schema.names != expected["columns"]:
        problems.append(f"columns {schema.names}, expected {expected['columns']}")

    if table.num_rows != expected["rows"]:
        problems.append(f"{table.num_rows} rows, expected {expected['rows']}")
    groups = parquet.metadata.num_row_groups
    if groups < expected.get("min_row_groups", 1):
        problems.append(f"{groups} row groups, expected at least {expected['min_row_groups']}")

    # Timestamps as integer microseconds, dictionaries as their strings.
    columns = {}
    for name in schema.names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns[name] = column.to_pylist()
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]

    for name, wanted in expected.get("count_by", {}).items():
        got = dict(Counter(str(row[name]) if row[name] is not None else "null" for row in rows))
        if got != wanted:
            problems.append(f"rows per {name}: {got}, expected {wanted}")

    for check in expected.get("rows_where", []):
        where = check["where"]
        matching = [row for row in rows if all(row[k] == v for k, v in where.items())]
        if "count" in check and len(matching) != check["count"]:
            problems.append(f"{where}: {len(matching)} rows, expected {check['count']}")
        for row in matching:
            for name, wanted in check.get("values", {}).items():
                got = row.get(name)
                close = (isinstance(got, float) and isinstance(wanted, (int, float))
                         and abs(got - wanted) <= 1e-9 * max(1.0, abs(wanted)))
                if got != wanted and not close:
                    problems.append(f"{where}: {name} = {got!r}, expected {wanted!r}")

    for problem in problems:
        print(f"check-parquet: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-parquet: {path}: {table.num_rows} rows in {groups} row groups, "
          f"{len(expected.get('rows_where', []))} row checks: all hold (pyarrow {pa.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
