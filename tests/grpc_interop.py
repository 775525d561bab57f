"""The Python side of tests/grpc_interop.rs: a grpcio client generated at
test time from Cairn's proto with grpcio-tools, run against the real
server; pyarrow reads the Arrow export. Prints one JSON document with what it received; values as the
64-bit patterns of their doubles, so the Rust side compares them bit for
bit with the HTTP API's.

Usage: grpc_interop.py PROTO_ROOT OUT_DIR HOST:PORT SPEC_JSON
"""

import json
import struct
import sys

from grpc_tools import protoc
import grpc
import pyarrow as pa


def bits(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def labels(ls):
    return {l.name: l.value for l in ls}


def main():
    proto_root, out_dir, addr, spec = sys.argv[1:5]
    spec = json.loads(spec)
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "cairn/query/v1/query.proto",
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)
    from cairn.query.v1 import query_pb2 as pb
    from cairn.query.v1 import query_pb2_grpc as rpc

    result = {}
    with grpc.insecure_channel(addr, compression=grpc.Compression.Gzip) as channel:
        stub = rpc.QueryServiceStub(channel)

        result["instant"] = {}
        for q in spec["instant"]:
            r = stub.InstantQuery(pb.InstantQueryRequest(query=q, time_ms=spec["t"]))
            assert r.WhichOneof("result") == "vector", r
            result["instant"][q] = [
                [labels(s.labels), [[s.timestamp_ms, bits(s.value)]]]
                for s in r.vector.samples
            ]

        result["range"] = {}
        result["messages"] = {}
        for q in spec["range"]:
            req = pb.RangeQueryRequest(
                query=q, start_ms=spec["start"], end_ms=spec["end"],
                step_ms=spec["step"], max_series_per_message=1)
            series, messages, summary = [], 0, None
            for msg in stub.RangeQuery(req):
                messages += 1
                assert summary is None, "a message after the summary"
                for s in msg.series:
                    series.append([labels(s.labels),
                                   [[p.timestamp_ms, bits(p.value)] for p in s.samples]])
                if msg.HasField("summary"):
                    summary = msg.summary
            assert summary is not None and summary.series_count == len(series)
            result["range"][q] = series
            result["messages"][q] = messages

        r = stub.Series(pb.SeriesRequest(matchers=spec["series"]))
        result["series"] = [labels(s.labels) for s in r.series]
        result["labels"] = list(stub.LabelNames(pb.LabelNamesRequest()).names)
        result["values"] = list(stub.LabelValues(pb.LabelValuesRequest(name="model")).values)

        chunks = [m.arrow_ipc for m in stub.Export(pb.ExportRequest(
            matchers=spec["series"], start_ms=spec["start"], end_ms=spec["end"],
            max_rows_per_batch=50))]
        table = pa.ipc.open_stream(b"".join(chunks)).read_all()
        label_cols = [n for n in table.column_names if n not in ("timestamp", "value")]
        ts = table.column("timestamp").cast(pa.int64()).to_pylist()
        vs = table.column("value").to_pylist()
        cols = {n: table.column(n).to_pylist() for n in label_cols}
        exported = {}
        for i in range(table.num_rows):
            key = json.dumps({n: cols[n][i] for n in label_cols if cols[n][i] is not None},
                             sort_keys=True)
            exported.setdefault(key, []).append([ts[i], bits(vs[i])])
        result["export"] = [[json.loads(k), v] for k, v in sorted(exported.items())]
        result["export_schema"] = [str(f.type) for f in table.schema]

        try:
            stub.InstantQuery(pb.InstantQueryRequest(query="sum(rate(x[5m])"))
            result["bad_query"] = "OK"
        except grpc.RpcError as e:
            result["bad_query"] = [e.code().name, e.details()]

    print(json.dumps(result))


if __name__ == "__main__":
    main()
