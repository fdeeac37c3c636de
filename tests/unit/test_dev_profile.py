"""``keycask server --dev`` writes its own AWS profile at every start, and keeps
the profiles people add beside it (docs/least-privilege.md adds one per role
to the data dir's config and credentials files)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from keycask.app import ensure_dev_profile
from service_harness import service


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(path.read_text())
    return parser


async def test_a_restart_keeps_added_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        config_file, credentials_file, created = await ensure_dev_profile(svc.runtime)
        assert created
        first = _read(credentials_file)["keycask"]["aws_access_key_id"]
        with config_file.open("a") as f:
            f.write("\n[profile key-admin]\nregion = us-east-1\nendpoint_url = http://x:1\n")
        with credentials_file.open("a") as f:
            f.write("\n[key-admin]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n")

        _, _, created_again = await ensure_dev_profile(svc.runtime)

        assert not created_again
        config, credentials = _read(config_file), _read(credentials_file)
        assert config["profile key-admin"]["endpoint_url"] == "http://x:1"
        assert credentials["key-admin"]["aws_access_key_id"] == "AKIAEXAMPLE"
        assert config["profile keycask"]["endpoint_url"] == svc.runtime.settings.endpoint_url
        assert credentials["keycask"]["aws_access_key_id"] == first
        assert credentials_file.stat().st_mode & 0o777 == 0o600
        assert config_file.stat().st_mode & 0o777 == 0o600


async def test_keycask_profile_is_rewritten_to_this_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with service(tmp_path, monkeypatch) as svc:
        config_file, _, _ = await ensure_dev_profile(svc.runtime)
        config_file.write_text(
            "[profile keycask]\nregion = elsewhere-1\nendpoint_url = http://old:1\n"
        )
        await ensure_dev_profile(svc.runtime)
        config = _read(config_file)["profile keycask"]
        assert config["region"] == svc.runtime.settings.region
        assert config["endpoint_url"] == svc.runtime.settings.endpoint_url
