"""adlab-serve in a subprocess on a loopback port, for the scripts that load or fuzz it over HTTP.

Shared by `bench_serving.py` and `fuzz_service.py`; not a script itself.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of asking."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(server: subprocess.Popen[bytes], port: int, seconds: float = 120.0) -> None:
    """Poll `/health` until it answers 200; RuntimeError when the server exits or `seconds` pass first."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"adlab-serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"adlab-serve did not answer /health within {seconds:.0f} s")
        time.sleep(0.2)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Terminate the server, killing it if it has not exited 20 s later."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@contextlib.contextmanager
def running_service(
    package: Path, work: Path, *settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """adlab-serve of `package` on a free 127.0.0.1 port, answering /health; stopped on leaving.

    Yields the server process and its port. `settings` are further adlab-serve overrides
    (`max_body_bytes=N`); Hydra writes under `work/serve`.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "adlab.serving.app", f"model={package}", "host=127.0.0.1", f"port={port}",
         *settings, f"hydra.run.dir={work / 'serve'}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until_healthy(server, port)
        yield server, port
    finally:
        stop(server)
