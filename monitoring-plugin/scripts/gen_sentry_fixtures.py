#!/usr/bin/env python3
"""Record REAL requests made by the official Python `sentry-sdk` as test fixtures.

Why: the Rust ingest parser must accept exactly what a real SDK sends (envelope
framing, gzip, auth header), not what we think it sends.

Usage (from the crate root):
    python3 -m venv .venv && .venv/bin/pip install sentry-sdk brotli
    .venv/bin/python scripts/gen_sentry_fixtures.py [tests/fixtures/sentry]

Each scenario starts a fresh SDK client pointed at a tiny loopback HTTP server
run by this script. Every request the SDK makes is saved as two files:
    NAME-N.request.json  {"method", "path", "headers": [[name, value], ...]}
    NAME-N.body          the raw body bytes exactly as received (gzip etc.)
Existing files for the scenario are replaced.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sentry_sdk

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/sentry"
RECEIVED = []
LOCK = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with LOCK:
            RECEIVED.append(
                {
                    "method": "POST",
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body,
                }
            )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id":"ok"}')

    def log_message(self, *args):
        pass


def save(name):
    with LOCK:
        got = list(RECEIVED)
        RECEIVED.clear()
    for old in os.listdir(OUT):
        if old.startswith(name + "-"):
            os.remove(os.path.join(OUT, old))
    for i, req in enumerate(got):
        base = os.path.join(OUT, f"{name}-{i}")
        with open(base + ".body", "wb") as f:
            f.write(req["body"])
        meta = {k: v for k, v in req.items() if k != "body"}
        with open(base + ".request.json", "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    print(f"{name}: {len(got)} request(s)")


def init(port, **extra):
    sentry_sdk.init(
        dsn=f"http://public@127.0.0.1:{port}/1",
        release="fixture-app@1.2.3",
        environment="fixtures",
        default_integrations=False,
        auto_session_tracking=False,
        **extra,
    )


def inner_lookup(table, key):
    return table[key]


def load_config(table):
    try:
        return inner_lookup(table, "missing_key")
    except KeyError as err:
        raise ValueError("config value missing: missing_key") from err


def scenario_chained(port):
    init(port)
    try:
        load_config({"present": 1})
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush()


def scenario_message(port):
    init(port)
    sentry_sdk.set_tag("plugin", "weather")
    sentry_sdk.set_tag("room", "kitchen")
    sentry_sdk.set_extra("attempt", 3)
    sentry_sdk.set_extra("payload", {"city": "Oslo", "units": "metric"})
    sentry_sdk.set_user({"id": "user-42", "username": "ada"})
    sentry_sdk.add_breadcrumb(category="http", message="GET /forecast", level="info",
                              data={"status_code": 504})
    sentry_sdk.add_breadcrumb(category="log", message="retrying in 17 ms", level="warning")
    sentry_sdk.capture_message("timeout after 5023 ms talking to 10.0.0.7", level="warning")
    sentry_sdk.flush()


def scenario_uncompressed(port):
    init(port, _experiments={"transport_compression_level": 0}, traces_sample_rate=1.0)
    with sentry_sdk.start_transaction(name="poll-sensors", op="task"):
        try:
            1 / 0
        except ZeroDivisionError:
            sentry_sdk.capture_exception()
    sentry_sdk.flush()


def scenario_brotli(port):
    # Default algorithm when the `brotli` module is installed; forced here.
    init(port, _experiments={"transport_compression_algo": "br"})
    sentry_sdk.capture_message("brotli body from sensor 0xdeadbeef", level="error")
    sentry_sdk.flush()


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fn in [
        ("chained", scenario_chained),
        ("message", scenario_message),
        ("uncompressed", scenario_uncompressed),
        ("brotli", scenario_brotli),
    ]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            fn(server.server_address[1])
            client = sentry_sdk.get_client()
            client.close(timeout=5)
        finally:
            server.shutdown()
            server.server_close()
        save(name)
    print("sentry-sdk", sentry_sdk.VERSION)


if __name__ == "__main__":
    main()
