"""A dev server started with ``--tls-self-signed`` (``make run TLS=1``):
conftest's Server over HTTPS, its clients trusting the data dir's
tls/cert.pem as their CA."""

from __future__ import annotations

import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import Server, dev_call


@dataclass
class SelfSignedServer(Server):
    args: tuple[str, ...] = ("--tls-self-signed",)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "tls" / "key.pem"

    def healthy(self) -> bool:
        if not self.ca_file.exists():
            return False
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            with urllib.request.urlopen(
                self.endpoint + "/healthz", timeout=1, context=context
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def ca_bundle(self) -> str | None:
        return str(self.ca_file)

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return dev_call(
            self.endpoint, self.credentials(), {"Seconds": seconds}, ca_file=str(self.ca_file)
        )
