#!/usr/bin/env python3
"""Decode an OTLP/HTTP trace request body (protobuf) and print it as JSON.

Usage: otlp_decode.py BODY_FILE

Uses the official opentelemetry-proto Python package, so it checks what our Rust exporter
sends against the reference schema. Output:
{"resource": {key: value}, "scopes": [names], "spans": [{trace_id, span_id, parent_span_id,
 name, kind, status_code, status_message, start, end, attributes: {key: value}}]}
Exit code 2 when the module is missing (the Rust test then skips), 1 on a decode error.
"""
import json
import sys

try:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
except ImportError as e:  # pragma: no cover
    print(f"opentelemetry-proto not installed: {e}", file=sys.stderr)
    sys.exit(2)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    with open(sys.argv[1], "rb") as f:
        body = f.read()
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = {"resource": {}, "scopes": [], "spans": []}
    for rs in req.resource_spans:
        out["resource"].update(attrs(rs.resource.attributes))
        for ss in rs.scope_spans:
            out["scopes"].append(ss.scope.name)
            for s in ss.spans:
                out["spans"].append(
                    {
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "status_code": s.status.code,
                        "status_message": s.status.message,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attrs(s.attributes),
                    }
                )
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
