"""Helpers for tests that run other processes: the worker, the CLI server."""

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LineWorker:
    """A test script in its own process: it prints ``ready ...`` once set up, then
    answers each command line it reads with one line."""

    def __init__(self, script, *args, env=None):
        self.proc = subprocess.Popen([sys.executable, str(HERE / script), *map(str, args)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.ready = self.proc.stdout.readline().split()
        assert self.ready and self.ready[0] == "ready", self.ready

    def send(self, line) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.kill()


class Worker(LineWorker):
    """tests/cognitive_worker.py in its own process."""

    def __init__(self, path, mode, amount):
        super().__init__("cognitive_worker.py", path, mode, amount)

    def step(self) -> int:
        return int(self.send("go"))


class Server:
    """`engram-numba metrics serve --attach ...` in its own process."""

    def __init__(self, *paths, port=0):
        args = [sys.executable, "-m", "engram_numba", "metrics", "serve", "--port", str(port)]
        for p in paths:
            args += ["--attach", str(p)]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"(http://\S+/metrics)", line)
        assert match, f"server did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.url = match.group(1)

    def get(self, accept=None) -> str:
        req = urllib.request.Request(self.url, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_for(predicate, timeout=30.0, interval=0.2):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:  # server not up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting; last: {last!r}")
