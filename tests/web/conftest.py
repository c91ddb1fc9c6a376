"""Fixtures of the browser tests: a csvbus (`csvbus dev`: upload service and sink in one
process) on free ports, with a fresh database and a random topic on the running broker, and
Chromium from Debian driven by Playwright."""

import os
import socket
import subprocess
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "release" / "csvbus"
ADMIN_URL = os.environ.get(
    "CSVBUS_TEST_ADMIN_URL", "postgres://csvbus:csvbus@127.0.0.1:5432/postgres"
)
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
CHROMIUM = os.environ.get("CSVBUS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs"

TABLES = """
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, born date);
CREATE TABLE cities (name text, country text)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def eventually(what: str, check, timeout: float = 30.0, every: float = 0.1):
    """Polls `check` until it returns a true value; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Service:
    """One running csvbus with its own database."""

    def __init__(self, url: str, database: str, log: Path):
        self.url = url
        self.database = database
        self.log = log

    def query(self, sql: str, *args):
        with psycopg.connect(db_url(self.database)) as conn:
            return conn.execute(sql, args).fetchall()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def csvbus(tmp_path: Path, keys: str | None = None, extra_env: dict | None = None):
    database = f"csvbus_web_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    with psycopg.connect(db_url(database), autocommit=True) as conn:
        conn.execute(TABLES)
    port, sink_port = free_port(), free_port()
    env = dict(
        os.environ,
        DATABASE_URL=db_url(database),
        KAFKA_BROKERS=BROKERS,
        CSVBUS_TOPIC=f"web-{uuid.uuid4().hex[:12]}",
        CSVBUS_LOG_FORMAT="json",
    )
    if keys:
        env["CSVBUS_API_KEYS"] = keys
    env.update(extra_env or {})
    log = tmp_path / "csvbus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BINARY), "dev", "--upload-addr", f"127.0.0.1:{port}",
             "--sink-addr", f"127.0.0.1:{sink_port}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually("csvbus to be ready", lambda: proc.poll() is not None or ready(url), 60)
        assert proc.poll() is None, f"csvbus exited: {log.read_text()[-2000:]}"
        yield Service(url, database, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def service(tmp_path):
    with csvbus(tmp_path) as s:
        yield s


@pytest.fixture
def keyed_service(tmp_path):
    with csvbus(tmp_path, keys="s3cret-key") as s:
        yield s


class Receiver:
    """A webhook receiver on a free port: answers 503 to its first `fail_first` requests,
    then 200, and keeps the events it was sent."""

    def __init__(self, fail_first: int):
        import http.server
        import threading

        self.events = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.events.append((self.headers.get("csvbus-event"), body))
                self.send_response(503 if len(receiver.events) <= fail_first else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hooked_service(tmp_path):
    """A csvbus whose imports' ends go to a receiver that fails its first delivery."""
    receiver = Receiver(fail_first=1)
    hooks = {
        "CSVBUS_WEBHOOK_URL": receiver.url,
        "CSVBUS_WEBHOOK_SECRET": "page-test-secret-0123456789abcdef",
        "CSVBUS_WEBHOOK_BACKOFF_MS": "200",
        "CSVBUS_WEBHOOK_POLL_MS": "100",
    }
    with csvbus(tmp_path, extra_env=hooks) as s:
        s.receiver = receiver
        yield s
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium (Playwright's own download cannot reach the network), with no
    background networking: the page must work without any external access."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"],
    }
