"""``keycask server``'s XKS flags: the path prefix AWS KMS can be given, and
mutual TLS only where keycask's own handshake can check the certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from keycask import config


def _load(tmp_path: Path, **flags: str) -> config.Settings:
    return config.load(dev=True, data_dir=str(tmp_path), env={}, **flags)


@pytest.mark.parametrize(
    ("prefix", "kept"),
    [("", ""), ("/", ""), ("/keystore-1", "/keystore-1"), ("/a/b_c/", "/a/b_c")],
)
def test_prefixes_aws_kms_accepts(tmp_path: Path, prefix: str, kept: str) -> None:
    assert _load(tmp_path, xks_path_prefix=prefix).xks_path_prefix == kept


@pytest.mark.parametrize(
    "prefix", ["keystore", "/a b", "/a.b", "/a//b", "/é", "/" + "a" * 117, "/a?b"]
)
def test_prefixes_it_does_not_are_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(config.ConfigError):
        _load(tmp_path, xks_path_prefix=prefix)


def test_the_longest_uri_path_is_128_characters(tmp_path: Path) -> None:
    prefix = "/" + "a" * (128 - len("/kms/xks/v1") - 1)
    assert len(_load(tmp_path, xks_path_prefix=prefix).xks_path_prefix + "/kms/xks/v1") == 128


def test_mutual_tls_needs_keycasks_own_tls_and_a_subject_needs_a_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(config.ConfigError, match="needs --tls-cert"):
        _load(tmp_path, xks_client_ca=str(ca))
    with pytest.raises(config.ConfigError, match="needs --xks-client-ca"):
        _load(tmp_path, xks_client_subject="cks.kms.eu-west-1.amazonaws.com")


def test_a_client_ca_needs_a_subject_and_not_the_other_doors_ca(tmp_path: Path) -> None:
    """One TLS context has one trust store, and AWS KMS's client certificates
    chain to a public CA: without a subject, or beside --tls-client-ca, each
    CA's certificates would pass where only the other's should."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    tls = {"tls_cert": str(ca), "tls_key": str(ca)}
    with pytest.raises(config.ConfigError, match="needs --xks-client-subject"):
        _load(tmp_path, xks_client_ca=str(ca), **tls)
    with pytest.raises(config.ConfigError, match="cannot be used together"):
        _load(
            tmp_path,
            xks_client_ca=str(ca),
            xks_client_subject="cks.kms.eu-west-1.amazonaws.com",
            tls_client_ca=str(ca),
            **tls,
        )


@pytest.mark.parametrize("prefix", ["/v1", "/v1/xks", "/v1/"])
def test_a_prefix_under_the_vault_doors_paths_is_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(config.ConfigError, match="Vault"):
        _load(tmp_path, xks_path_prefix=prefix)


def test_the_xks_proxy_client_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.xks_proxy_timeout == 0.25  # AWS KMS's 250 ms
    assert (settings.xks_proxy_ca_file, settings.xks_proxy_connect_to) == (None, "")
    env = {
        "KEYCASK_XKS_PROXY_TIMEOUT_MS": "1500",
        "KEYCASK_XKS_PROXY_CA_FILE": "/etc/ca.pem",
        "KEYCASK_XKS_PROXY_CONNECT_TO": "a.test=http://127.0.0.1:8080",
    }
    settings = config.load(dev=True, data_dir=str(tmp_path), env=env)
    assert settings.xks_proxy_timeout == 1.5
    assert settings.xks_proxy_ca_file == "/etc/ca.pem"
    assert settings.xks_proxy_connect_to == "a.test=http://127.0.0.1:8080"
    for bad in ("0", "-1", "1.5", "60001", "ten"):
        with pytest.raises(config.ConfigError):
            config.load(dev=True, data_dir=str(tmp_path), env={"KEYCASK_XKS_PROXY_TIMEOUT_MS": bad})
