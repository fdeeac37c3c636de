"""The web console's serving side: when it is served (config), the headers on
every answer, the packaged files, and the rules its scripts keep (no inline
script or style, nothing parsed as HTML, no secret in browser storage)."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from keycask import config
from keycask.http.console import CSP, Console
from keycask.http.messages import Request

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "src" / "keycask" / "console_assets"


def _get(console: Console, path: str, method: str = "GET") -> tuple[int, dict[bytes, bytes], bytes]:
    response = console.handle(Request(method, path, path.encode(), b"", (), b""))
    return response.status, dict(response.headers), response.body


# -- when it is served --


def test_console_is_on_in_dev_on_loopback_and_off_in_production_unless_asked() -> None:
    assert config.load(dev=True, env={}).console
    assert not config.load(dev=True, console=False, env={}).console
    assert not config.load(dev=False, env={}, data_dir="/nonexistent").console
    assert config.load(dev=False, console=True, env={}, data_dir="/nonexistent").console


def test_console_over_plain_http_off_loopback_is_refused_at_start() -> None:
    with pytest.raises(config.ConfigError, match=r"web console over plain HTTP on 0\.0\.0\.0"):
        config.load(dev=True, listen="0.0.0.0:9567", console=True, env={})
    with pytest.raises(config.ConfigError, match="web console over plain HTTP"):
        config.load(
            dev=False,
            listen="10.0.0.5:9567",
            console=True,
            insecure_plaintext=True,
            env={},
            data_dir="/nonexistent",
        )
    # --dev's default stays off there rather than refusing the server.
    assert not config.load(dev=True, listen="0.0.0.0:9567", env={}).console
    # With TLS it is served anywhere.
    served = config.load(
        dev=False,
        listen="0.0.0.0:9567",
        console=True,
        tls_cert="c.pem",
        tls_key="k.pem",
        env={},
        data_dir="/nonexistent",
    )
    assert served.console


# -- what it answers --

HTML_HEADERS = {
    b"content-security-policy": CSP,
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-store",
}


def test_index_carries_the_strict_headers() -> None:
    console = Console("eu-west-1")
    for path in ("/console/", "/console/index.html"):
        status, headers, body = _get(console, path)
        assert status == 200
        assert body.startswith(b"<!DOCTYPE html>")
        assert headers[b"content-type"] == b"text/html; charset=utf-8"
        for name, value in HTML_HEADERS.items():
            assert headers[name] == value
    assert b"default-src 'self'" in CSP and b"frame-ancestors 'none'" in CSP
    assert b"unsafe-inline" not in CSP and b"unsafe-eval" not in CSP


def test_every_answer_carries_the_security_headers() -> None:
    console = Console("us-east-1")
    for path, method, status in (
        ("/console/app.js", "GET", 200),
        ("/console/console.css", "GET", 200),
        ("/console/nothing.js", "GET", 404),
        ("/console/../keycask.db", "GET", 404),
        ("/console/", "POST", 405),
    ):
        got, headers, _ = _get(console, path, method)
        assert got == status, path
        assert headers[b"content-security-policy"] == CSP
        assert headers[b"x-frame-options"] == b"DENY"
        assert headers[b"x-content-type-options"] == b"nosniff"
    _, headers, _ = _get(console, "/console/app.js")
    assert headers[b"content-type"] == b"text/javascript; charset=utf-8"
    status, headers, _ = _get(console, "/console")
    assert (status, headers[b"location"]) == (308, b"/console/")


def test_settings_name_the_region_and_nothing_else() -> None:
    _, _, body = _get(Console("ap-south-2"), "/console/settings.json")
    assert body == b'{"region":"ap-south-2"}'


def test_the_assets_ship_as_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["keycask.console_assets"]
    on_disk = {p.name for p in ASSETS.iterdir() if p.suffix in (".html", ".css", ".js")}
    shipped = {p.name for p in ASSETS.iterdir() if any(p.match(g) for g in patterns)}
    assert on_disk and on_disk == shipped
    packaged = {e.name for e in resources.files("keycask.console_assets").iterdir()}
    assert on_disk <= packaged


# -- the rules the files keep --


def test_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    html = (ASSETS / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html
    assert re.findall(r"\sstyle=|\son[a-z]+=", html) == []
    for asset in ASSETS.iterdir():
        if asset.suffix in (".html", ".css", ".js"):
            # The SVG namespace (chart.js) is an XML name, never fetched.
            found = re.findall(r"https?://(?!www\.w3\.org/2000/svg\b)", asset.read_text())
            assert found == [], asset.name


def test_scripts_never_parse_data_as_html_or_keep_the_secret() -> None:
    forbidden = (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "indexedDB",
    )
    for script in ASSETS.glob("*.js"):
        text = script.read_text()
        assert [word for word in forbidden if word in text] == [], script.name
