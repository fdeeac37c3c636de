"""cli/execute.py's plan: which names a secrets file alone may not set.
No server: the plan is made from the names before anything is decrypted."""

from __future__ import annotations

import argparse

import pytest

from keycask.cli.errors import UsageError
from keycask.cli.execute import plan
from keycask.cli.secretfile import SecretFile

KEY = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000"

CODE = [
    "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0",
    "GIT_CONFIG_KEY_12", "GIT_ASKPASS", "GIT_PROXY_COMMAND", "GIT_EXTERNAL_DIFF", "GIT_SSH",
    "GIT_SSH_COMMAND", "SSH_ASKPASS", "LUA_INIT", "LUA_INIT_5_4", "LUA_PATH",
    "LUA_CPATH_5_3", "OPENSSL_CONF",
    "DOTNET_STARTUP_HOOKS", "LD_PRELOAD", "PYTHONPATH", "PATH",
]  # fmt: skip
TRUST = [
    "NODE_TLS_REJECT_UNAUTHORIZED", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
    "ALL_PROXY", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "SSLKEYLOGFILE",
]  # fmt: skip


def _args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(
        **{"secrets": ["s.env"], "only": None, "prefix": None, "env": None, **given}
    )


def _file(*names: str) -> dict[str, SecretFile]:
    return {"s.env": SecretFile(KEY, {}, {name: b"blob" for name in names})}


@pytest.mark.parametrize(
    ("name", "why"),
    [(n, "load or run other code") for n in CODE]
    + [(n, "where programs send traffic or whom they trust") for n in TRUST],
)
def test_a_file_alone_may_not_set_it(name: str, why: str) -> None:
    files = _file(name, "API_TOKEN")
    with pytest.raises(UsageError, match=f"s.env sets {name}, which .*{why}.*--only"):
        plan(_args(), files)
    # The command line's consent: --only names it, or --prefix renames it.
    assert [w.variable for w in plan(_args(only=[name]), files)] == [name]
    assert {w.variable for w in plan(_args(prefix="APP_"), files)} == {
        f"APP_{name}",
        "APP_API_TOKEN",
    }


@pytest.mark.parametrize("name", ["API_TOKEN", "GIT_AUTHOR_NAME", "LUA_VERSION", "HTTP_PORT"])
def test_ordinary_names_need_no_consent(name: str) -> None:
    assert [w.variable for w in plan(_args(), _file(name))] == [name]
