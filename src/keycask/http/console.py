"""The web console's files at ``GET /console/``: static HTML, CSS and
JavaScript packaged with keycask (``keycask/console_assets/``), read once at
start and answered from memory with strict security headers.

The console has no powers of its own and no server side: the browser signs
every call to ``POST /`` with the access key the operator typed in
(the sigv4.js asset), so each action is an ordinary signed, authorized and audited
call under that principal. This module only hands out the files, plus
settings.json (the region to sign for). docs/architecture.md's threat
model says why that is safe against CSRF and what the headers are for.
"""

from __future__ import annotations

from importlib import resources

import orjson

from keycask.http.messages import Request, Response

PREFIX = "/console"

# No inline script or style, nothing from another origin, never framed.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".png": b"image/png",
    ".svg": b"image/svg+xml",
}


def _headers(name: str) -> tuple[tuple[bytes, bytes], ...]:
    suffix = name[name.rfind(".") :]
    # HTML is never stored; the scripts and styles are revalidated each time,
    # so a new keycask's console never runs beside an old cached script.
    cache = b"no-store" if suffix == ".html" else b"no-cache"
    return (
        (b"content-type", _TYPES[suffix]),
        (b"cache-control", cache),
        *SECURITY_HEADERS,
    )


def _text(status: int, message: str) -> Response:
    return Response(
        status,
        message.encode(),
        (
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-store"),
            *SECURITY_HEADERS,
        ),
    )


class Console:
    """The console's files by URL path, loaded once."""

    def __init__(self, region: str) -> None:
        files: dict[str, Response] = {}
        root = resources.files("keycask.console_assets")
        for entry in root.iterdir():
            name = entry.name
            suffix = name[name.rfind(".") :] if "." in name else ""
            if entry.is_file() and suffix in _TYPES:
                files[f"{PREFIX}/{name}"] = Response(200, entry.read_bytes(), _headers(name))
        if f"{PREFIX}/index.html" not in files:
            raise RuntimeError("keycask's console assets are missing index.html")
        files[f"{PREFIX}/"] = files[f"{PREFIX}/index.html"]
        settings = orjson.dumps({"region": region})
        files[f"{PREFIX}/settings.json"] = Response(200, settings, _headers("settings.json"))
        self._files = files

    @staticmethod
    def serves(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "the console's files are read with GET")
        if request.path == PREFIX:
            return Response(
                308, b"", ((b"location", b"/console/"), (b"cache-control", b"no-store"))
            )
        found = self._files.get(request.path)
        # (A HEAD's body is dropped by the server: the length stays right.)
        return _text(404, "no such console file") if found is None else found
