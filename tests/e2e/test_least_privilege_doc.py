"""docs/least-privilege.md, run as a reader runs it.

Every ```sh block of the page, in order, goes line by line through one bash
session (docwalk.Shell) in a fresh directory holding ``.venv`` and ``docs``
(the page runs from the repository); its ``make run`` line starts the dev
server as the Makefile does, with the variables the line sets, on a free
port. Each command must do what its comment says (docwalk.check): the four
roles can do their jobs and nothing else, the dev administrator's put of the
key policy is refused by the lockout check with a message that names the
way on, and the checking tools answer as the page says.

The lockout recovery block is the production form (``--data-dir
/var/lib/keycask`` and the page's placeholder key id): it runs with those
two placeholders replaced by this dev data dir and the walkthrough's key,
and the account's administrator has the key again from the running server.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from docwalk import VENV, Command, MakeRun, Result, Shell, blocks, check, clean_env, commands

from conftest import REPO, free_port

DOC = REPO / "docs" / "least-privilege.md"
PLACEHOLDER_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
PRODUCTION_DIR = "/var/lib/keycask"


def test_least_privilege_walkthrough(tmp_path: Path) -> None:
    if shutil.which("jq") is None:
        pytest.fail("the page's profile() uses jq: install it (apt-get install jq)")
    home = tmp_path / "repo"
    home.mkdir()
    (home / ".venv").symlink_to(VENV)
    (home / "docs").symlink_to(REPO / "docs")
    shell = Shell(home, clean_env(HOME=str(tmp_path / "user")), tmp_path / "shell")
    server: MakeRun | None = None
    seen: dict[str, Result] = {}
    try:
        for block in blocks(DOC.read_text()):
            for command in commands(block):
                if " make run" in command.text:
                    server = MakeRun(home, free_port(), command.text)
                    continue
                if PRODUCTION_DIR in command.text:
                    assert server is not None
                    key = shell.value("KEY")
                    text = command.text.replace(PLACEHOLDER_KEY, key)
                    text = text.replace(PRODUCTION_DIR, str(server.data_dir))
                    command = Command(text, command.comment)
                result = shell.run(command)
                check(result)
                seen[command.text] = result
        assert server is not None

        def ran(*pieces: str) -> Result:
            found = [r for text, r in seen.items() if all(p in text for p in pieces)]
            assert len(found) == 1, (pieces, list(seen))
            return found[0]

        refused = ran("--profile keycask kms put-key-policy")
        assert "MalformedPolicyDocumentException" in refused.err
        assert "put it as a principal it gives kms:PutKeyPolicy" in refused.err
        assert "--bypass-policy-lockout-safety-check" in refused.err
        assert ran("--profile tenant-service kms decrypt").out == "acme records"
        assert ran("--profile auditor kms describe-key").out.strip() == '"Enabled"'
        assert ran("--context tenant=acme").out.startswith(
            "ALLOW: arn:aws:iam::111122223333:user/tenant-service kms:Decrypt"
        )
        assert ran("--context tenant=globex").out.startswith("DENY: ")
        who = ran("policy who-can").out.splitlines()
        assert len(who) == 2  # the heading, then tenant-service alone
        assert who[1].startswith("  arn:aws:iam::111122223333:user/tenant-service: if ")
        assert '(= "acme")' in who[1]
        assert ran("policy lint", "in the store").out.startswith(
            "0 finding(s) in 1 key policies and 1 identity policies"
        )
        reset = ran("keycask policy reset")
        assert reset.out.startswith("reset the key policy of "), reset.out + reset.err

        # The running server sees the reset at its next request: the
        # default policy hands the key back to the account's administrators,
        # as the page says, without a restart.
        blob = (home / "acme.enc").read_bytes()
        admin = server.kms()
        answer = admin.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "acme"})
        assert answer["Plaintext"] == b"acme records"
    finally:
        shell.close()
        if server is not None:
            server.stop()
