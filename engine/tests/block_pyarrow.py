"""Reads a Cairn block's series.parquet with pyarrow and prints, as JSON,
what a standard tool sees: the format version from the key-value metadata,
and per series (grouped by the `series` column) its labels from the
`label.*` columns, chunk count, sample count and time range. Also the
`label.__name__` min/max statistics of every row group.

Usage: python block_pyarrow.py <path to series.parquet>
"""
import json
import sys

import pyarrow.parquet as pq


def main(path):
    f = pq.ParquetFile(path)
    kv = {k.decode(): v.decode() for k, v in (f.metadata.metadata or {}).items()}
    table = f.read()
    label_cols = [c for c in table.column_names if c.startswith("label.")]
    series = {}
    for row in table.to_pylist():
        s = series.setdefault(row["series"], {
            "labels": {c[len("label."):]: row[c] for c in label_cols if row[c] is not None},
            "chunks": 0,
            "samples": 0,
            "min_time": row["min_time_ms"],
            "max_time": row["max_time_ms"],
        })
        s["chunks"] += 1
        s["samples"] += row["num_samples"]
        s["min_time"] = min(s["min_time"], row["min_time_ms"])
        s["max_time"] = max(s["max_time"], row["max_time_ms"])
        if not isinstance(row["chunk"], bytes) or len(row["chunk"]) == 0:
            raise SystemExit("chunk column is not non-empty binary")
    name_idx = f.schema_arrow.get_field_index("label.__name__")
    stats = []
    for i in range(f.metadata.num_row_groups):
        st = f.metadata.row_group(i).column(name_idx).statistics
        stats.append([st.min, st.max] if st is not None and st.has_min_max else None)
    json.dump({
        "version": kv.get("cairn.block.format_version"),
        "series": [series[k] for k in sorted(series)],
        "name_stats": stats,
    }, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
