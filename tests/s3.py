"""A real S3-protocol server on loopback for the tests (moto's server, in its own process), and a
small HTTP proxy in front of it that fails or damages some requests on purpose."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """``python -m moto.server`` on 127.0.0.1, started and stopped by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def storage_options(endpoint: str) -> dict[str, Any]:
    """s3fs options for a loopback endpoint (moto accepts any credentials)."""
    return {
        "key": "testing",
        "secret": "testing-secret-never-printed",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "skip_instance_cache": True,
        # no botocore retries (seconds of backoff): chute's own are under test
        "config_kwargs": {"retries": {"total_max_attempts": 1, "mode": "standard"}},
    }


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    options = storage_options(endpoint)
    client = boto3.client(
        "s3",
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        **options["client_kwargs"],
    )
    client.create_bucket(Bucket=name)


class FaultyProxy:
    """Forwards HTTP to ``upstream``; every ``fail_every``-th request gets a 503 SlowDown, and every
    ``damage_every``-th successful GET of a shard has one byte flipped (a damaged transfer)."""

    def __init__(self, upstream: str, fail_every: int = 0, damage_every: int = 0) -> None:
        self.upstream = upstream.split("://", 1)[1]
        self.fail_every, self.damage_every = fail_every, damage_every
        self.requests = self.failed = self.damaged = self.gets = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.fail_every and proxy.requests % proxy.fail_every == 0
                if fail:
                    with proxy.lock:
                        proxy.failed += 1
                    self._reply(503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = proxy.upstream
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                shard = self.path.split("?", 1)[0].endswith(".arrow")
                if self.command == "GET" and shard and response.status in (200, 206) and len(data) > 64:
                    with proxy.lock:
                        proxy.gets += 1
                        damage = proxy.damage_every and proxy.gets % proxy.damage_every == 0
                        proxy.damaged += bool(damage)
                    if damage:
                        data = data[:32] + bytes([data[32] ^ 0xFF]) + data[33:]
                skip = {"transfer-encoding", "connection"} | (
                    {"content-length"} if self.command != "HEAD" else set()
                )
                headers = {k: v for k, v in response.getheaders() if k.lower() not in skip}
                self._reply(response.status, headers, data)

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups on loopback
