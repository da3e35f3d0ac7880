"""Network faults through Toxiproxy (github.com/Shopify/toxiproxy), a real
TCP proxy whose faults ("toxics") are set over its HTTP API.

The server is built with ``go install`` from the Go module proxy on first use
and cached like kustomize (subsidy_dev/tools.py). ``Toxiproxy`` starts one
server process on a free loopback port; ``proxy()`` puts a named proxy
between a client and an upstream; on a ``Proxy``:

- ``latency(ms, jitter_ms)``, ``bandwidth(kb_per_s)``: slow links;
- ``reset_peer(after_ms)``: connections reset (TCP RST) after a while;
- ``timeout(ms)``: data stops, the connection closes after ``ms`` (0: never);
- ``disable()`` / ``enable()``: a partition — open connections closed, new
  ones refused, until enabled;
- ``clear()``: every toxic removed.

The fault suite (tests/faults/) routes each service's Kafka and PostgreSQL
connections through proxies of their own, so one service can be cut off or
slowed while the others are not (docs/faults.md).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from subsidy_dev import free_port, run_groups
from subsidy_dev.tools import go_tool

MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
#: The newest version the Go module proxy here serves (v2.3.0 and v2.5.0).
VERSION = "v2.5.0"


def server_binary() -> Path:
    """The toxiproxy server, built once into the cache."""
    return go_tool("toxiproxy", MODULE, VERSION, binary="server")


class ToxiproxyError(RuntimeError):
    pass


class Proxy:
    """One proxy of a running server: ``listen`` is what clients connect to."""

    def __init__(self, api: Toxiproxy, name: str, listen: str, upstream: str):
        self.api = api
        self.name = name
        self.listen = listen
        self.upstream = upstream

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def _toxic(self, kind: str, stream: str, **attributes: int) -> None:
        self.api.call(
            "POST",
            f"/proxies/{self.name}/toxics",
            {"name": f"{kind}_{stream}", "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes},
        )

    def latency(self, ms: int, jitter_ms: int = 0) -> None:
        for stream in ("upstream", "downstream"):
            self._toxic("latency", stream, latency=ms, jitter=jitter_ms)

    def bandwidth(self, kb_per_s: int) -> None:
        for stream in ("upstream", "downstream"):
            self._toxic("bandwidth", stream, rate=kb_per_s)

    def reset_peer(self, after_ms: int = 0) -> None:
        self._toxic("reset_peer", "upstream", timeout=after_ms)

    def timeout(self, ms: int = 0) -> None:
        self._toxic("timeout", "upstream", timeout=ms)

    def clear(self) -> None:
        for toxic in self.api.call("GET", f"/proxies/{self.name}/toxics") or []:
            self.api.call("DELETE", f"/proxies/{self.name}/toxics/{toxic['name']}")

    def disable(self) -> None:
        self.api.call("POST", f"/proxies/{self.name}", {"enabled": False})

    def enable(self) -> None:
        self.api.call("POST", f"/proxies/{self.name}", {"enabled": True})

    def heal(self) -> None:
        """Back to a clean link."""
        self.clear()
        self.enable()


class Toxiproxy:
    """A toxiproxy server on 127.0.0.1, its log under ``var_dir``."""

    def __init__(self, var_dir: Path | str):
        self.var_dir = Path(var_dir)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.proxies: dict[str, Proxy] = {}

    def start(self) -> Toxiproxy:
        binary = server_binary()
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.var_dir / "toxiproxy.log", "ab")
        try:
            self.process = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(self.port), "-seed", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        run_groups.register(self.process.pid, f"Toxiproxy in {self.var_dir}")
        deadline = time.monotonic() + 30
        while True:
            try:
                self.call("GET", "/version")
                return self
            except ToxiproxyError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Toxiproxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ToxiproxyError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()[:300]}") from None
        except OSError as exc:
            raise ToxiproxyError(f"{method} {path}: {exc}") from None
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:  # /version answers plain text
            return text

    def proxy(self, name: str, upstream: str, listen_port: int | None = None) -> Proxy:
        listen = f"127.0.0.1:{listen_port or free_port()}"
        self.call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        proxy = self.proxies[name] = Proxy(self, name, listen, upstream)
        return proxy

    def heal_all(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()
