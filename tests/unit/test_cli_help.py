"""``keycask --help`` and every subcommand's: each option and argument says
what it is, defaults are shown, the top level names every command group and
gives examples, ``--version`` answers; and the completion script is
generated from the same tree."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata

import pytest

from keycask.cli.completion import script, walk
from keycask.cli.main import parser


def _parsers(
    node: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, node
    for action in node._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def _help(*path: str) -> str:
    for found, node in _parsers(parser()):
        if found == path:
            return " ".join(node.format_help().split())
    raise AssertionError(f"no command {path}")


def test_every_option_and_argument_has_help() -> None:
    missing = []
    commands = 0
    for path, node in _parsers(parser()):
        commands += 1
        node.format_help()  # renders (a stray % in a help text would raise here)
        for action in node._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help is argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"keycask {' '.join(path)} {action.option_strings or action.dest}")
    assert commands > 40
    assert missing == []


def test_defaults_are_shown() -> None:
    init = _help("operator", "init")
    assert re.search(r"--seal \{[a-z0-9,]+\} .*\(default: shamir\)", init), init
    assert re.search(r"--shares SHARES .*\(default: 5\)", init), init
    assert re.search(r"--threshold THRESHOLD .*\(default: 3\)", init), init
    status = _help("operator", "status")
    assert "--endpoint-url URL, --addr URL" in status
    assert "env KEYCASK_ADDR; default:" in status
    assert "(default: None)" not in status and "(default: False)" not in status


def test_token_file_says_what_each_variable_holds() -> None:
    text = _help("operator", "unseal")
    assert "KEYCASK_OPERATOR_TOKEN_FILE, the path of such a file" in text
    assert "KEYCASK_OPERATOR_TOKEN, the token itself" in text


def test_the_top_level_names_every_group_with_examples() -> None:
    text = _help()
    for group in ("server", "principals", "audit", "policy", "operator", "dev", "config"):
        assert f"`{group}" in text, group
    assert "examples:" in text and "exit status:" in text


@pytest.mark.parametrize(
    "path",
    [("dev", "advance-clock"), ("config", "show"), ("completion",), ("principals",), ("operator",)],
)
def test_examples_in_epilogs(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "examples:" in text
    assert f"keycask {' '.join(path)} " in text.split("examples:", 1)[1]


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "keycask.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == f"keycask {metadata.version('keycask')}"


def test_json_wherever_a_command_prints_data() -> None:
    """Every command that calls the server and prints an answer takes --json."""
    without = []
    for path, node in _parsers(parser()):
        options = {o for a in node._actions for o in a.option_strings}
        calls_server = "--endpoint-url" in options
        prints = path[-1:] not in (
            ("delete",), ("delete-policy",), ("put-policy",), ("tag",), ("untag",),
            ("update-role",),
            ("activate",), ("deactivate",), ("get-policy",), ("revoke",),
            # Their output is the data itself (a message, a plaintext).
            ("encrypt",), ("decrypt",),
        )  # fmt: skip
        # A secret's raw value on stdout, a note on stderr, or (exec) the program itself.
        raw = path in {("secrets", "set"), ("secrets", "get"), ("secrets", "rotate"), ("exec",)}
        if calls_server and prints and not raw and "--json" not in options:
            without.append(" ".join(path))
    assert without == []


def test_completion_lists_each_level_of_the_tree() -> None:
    tree = dict(walk(parser()))
    assert {"server", "principals", "operator", "completion", "--version"} <= set(tree[()])
    assert {"create", "list", "access-keys", "--help"} <= set(tree[("principals",)])
    assert {"--endpoint-url", "--ca-file", "--profile", "--json"} <= set(
        tree[("principals", "list")]
    )
    for shell in ("bash", "zsh"):
        text = script(parser(), shell)
        assert "complete -o default -F _keycask keycask" in text
        assert "'principals access-keys') echo 'create list activate deactivate delete" in text
    assert "bashcompinit" in script(parser(), "zsh")


def _tree(root: argparse.ArgumentParser, top: str) -> dict[tuple[str, ...], str]:
    return {path: node.format_help() for path, node in _parsers(root) if path and path[0] == top}


def test_a_command_line_builds_only_its_group_and_the_same_tree() -> None:
    """``parser(only=...)`` (what ``main`` builds for a command line naming
    its command) holds exactly the full tree's parsers for that command."""
    full = parser()
    tops = [path[0] for path, _ in _parsers(full) if len(path) == 1]
    assert {"exec", "secrets", "encrypt", "decrypt", "server", "completion"} <= set(tops)
    for top in tops:
        alone = parser(only=top)
        assert [p[0] for p, _ in _parsers(alone) if len(p) == 1] == [
            t for t in tops if _group(t) == _group(top)
        ]
        assert _tree(alone, top) == _tree(full, top), top


def _group(top: str) -> str:
    from keycask.cli.main import GROUPS

    return next((module for names, module, _ in GROUPS if top in names), top)


@pytest.mark.parametrize("command", ["exec", "secrets", "encrypt"])
def test_the_application_tools_do_not_load_the_server(command: str) -> None:
    """``keycask exec`` runs at every start of an application: it must not
    pay for the server, the store, the audit chain or the Encryption SDK
    (``encrypt`` needs the SDK only once it runs, not to parse)."""
    probe = (
        "import sys\n"
        "from keycask.cli.main import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('keycask.app', 'keycask.service', 'keycask.storage', 'keycask.audit',\n"
        "         'keycask.crypto', 'aws_encryption_sdk', 'psycopg')\n"
        "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if '.' in m else m\n"
        "              for m in sys.modules if m.startswith(heavy)}))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]
    assert found == "[]"


def test_version_builds_no_command_group() -> None:
    """``keycask --version`` (what scripts and packagers call) answers from
    the package's metadata alone: no command group, no botocore."""
    probe = (
        "import sys\n"
        "from keycask.cli.main import GROUPS, main\n"
        "main(['--version'])\n"
        "groups = {module for _, module, _ in GROUPS}\n"
        "print(sorted(m for m in sys.modules if m in groups or m.startswith('botocore')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("keycask ") and lines[-1] == "[]"
