"""docs/secrets-file.md's walkthrough, run as a reader runs it: its first
```sh block line by line through one bash session (docwalk.Shell) in a fresh
directory, its ``make run`` line started as the Makefile does on a free port.
Each command must do what its comment says (docwalk.check); then the test
checks what the page promises beyond that: the file holds no value, the
children saw what the page says, and the swapped file's ``./app`` (which
would leave a marker) never ran."""

from __future__ import annotations

from pathlib import Path

import pytest
from docwalk import VENV, MakeRun, Result, Shell, blocks, check, clean_env, commands

from conftest import REPO, free_port

DOC = REPO / "docs" / "secrets-file.md"


@pytest.mark.slow
def test_secrets_walkthrough(tmp_path: Path) -> None:
    home = tmp_path / "repo"
    home.mkdir()
    (home / ".venv").symlink_to(VENV)
    marker = tmp_path / "app-ran"
    app = home / "app"
    app.write_text(f"#!/bin/sh\ntouch {marker}\n")
    app.chmod(0o755)
    shell = Shell(home, clean_env(HOME=str(tmp_path / "user")), tmp_path / "shell")
    server: MakeRun | None = None
    seen: list[Result] = []
    try:
        for command in commands(blocks(DOC.read_text())[0]):
            if "make run" in command.text:
                server = MakeRun(home, free_port(), command.text)
                continue
            result = shell.run(command)
            check(result)
            seen.append(result)
        assert server is not None
    finally:
        shell.close()
        if server is not None:
            server.stop()
    outputs = {r.command.text.split(" -- ")[-1]: r for r in seen}
    listed = [r for r in seen if r.command.text.startswith("keycask secrets list")]
    assert listed[0].out.split() == ["API_TOKEN", "DB_PASSWORD"]
    assert any(r.out == "the app has its token\n" for r in outputs.values())
    assert any(r.out == "only the token\n" for r in outputs.values())
    got = [r for r in seen if r.command.text.startswith("keycask secrets get")]
    assert got[0].out == "correct horse battery staple"
    refused = seen[-1]
    assert "cannot decrypt API_TOKEN in secrets.env: InvalidCiphertextException" in refused.err
    assert not marker.exists()
    text = (home / "secrets.env").read_text()
    assert "correct horse" not in text and "tok-8f14e45f" not in text
