"""``keycask exec``: run a program with secrets from secrets files added to
its environment.

Fail closed, then get out of the way. Every file is parsed and every value
decrypted before anything runs; any failure ends keycask with one line
naming the file and the secret (never a value) and the program is not
started. Then execve(2) replaces keycask with the program: the same
process, so stdin, stdout, stderr, signals (SIGTERM from a supervisor,
SIGINT from a terminal) and the exit status are the program's own with no
relay that could lose them, and the decrypted values leave keycask's memory
with keycask. Values never reach a file, argv or keycask's output.

A name found in two sources is an error rather than a silent override: which
file wins would otherwise depend on the order of flags in some deploy
script; a name keycask inherited is replaced, with a warning naming it. A
file can only add names a loader or interpreter reads as code
(``LD_PRELOAD``, ``PATH``, ``PYTHONPATH``, ``NODE_OPTIONS``, git's
configuration...) or that redirect traffic or trust (``HTTPS_PROXY``,
``SSL_CERT_FILE``, ``NODE_TLS_REJECT_UNAUTHORIZED``...) when the command line
names them (``--only`` or ``--env``) or prefixes them (``--prefix``):
whoever can write to a secrets file and encrypt under its key must not get
to run code in the program, or read its traffic, by adding a line.

The file's header names its key, and an attacker who can edit the file can
name one whose policy lets the application decrypt: ``--key-id`` (or
``KEYCASK_SECRETS_KEY_ID``, set by the supervisor) pins the key, and every
value must then be under it (``secretvalues.decrypt``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from dataclasses import dataclass

from keycask.cli import outfile
from keycask.cli.errors import CommandFailed, UsageError, say
from keycask.cli.kmsclient import add_kms_options, connect
from keycask.cli.secretfile import NAME_RULE, SecretFile, check_name, valid_name
from keycask.cli.secretvalues import PIN_VARIABLE, decrypt, pinned_key, read_file

NOT_FOUND, NOT_EXECUTABLE = 127, 126
# The signals the interpreter sets to SIG_IGN for itself (those that exist here).
_PYTHON_IGNORES = tuple(n for n in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, n))
REFERENCE = "keycask:"

# Variables that make a program load or run other code, or change which
# program runs. Not exhaustive (no list can be); --prefix avoids the question.
# git reads configuration (core.sshCommand, a credential helper: commands)
# from GIT_CONFIG_PARAMETERS and GIT_CONFIG_COUNT/KEY_n/VALUE_n; OpenSSL's
# config loads engines and providers; .NET runs its startup hooks; Lua runs
# LUA_INIT and loads modules from LUA_PATH/LUA_CPATH.
_CODE_NAMES = frozenset(
    {
        "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH",
        "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONEXECUTABLE",
        "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS", "NODE_PATH",
        "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
        "GCONV_PATH", "HOSTALIASES", "LOCPATH", "NLSPATH", "MALLOC_CONF",
        "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_ASKPASS", "GIT_PROXY_COMMAND",
        "GIT_EXTERNAL_DIFF", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
        "EDITOR", "VISUAL", "PAGER", "SSH_ASKPASS", "LUA_INIT", "LUA_PATH", "LUA_CPATH",
        "OPENSSL_CONF", "DOTNET_STARTUP_HOOKS", "HOME", "SHELL",
    }
)  # fmt: skip
_CODE_PREFIXES = (
    "LD_", "DYLD_", "BASH_FUNC_", "PYTHON", "GLIBC_", "GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_",
    "LUA_INIT_5_", "LUA_PATH_5_", "LUA_CPATH_5_",
)  # fmt: skip
# Variables that send a program's traffic elsewhere or change whom it
# trusts: a proxy (HTTPS included: the proxy sees where, and with a CA of its
# choosing what), a CA bundle, TLS checks off, TLS session keys written to a
# file. Code runs nowhere, but secrets leave: the same consent is asked.
_TRUST_NAMES = frozenset(
    {
        "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED", "SSLKEYLOGFILE",
    }
)  # fmt: skip
_REFERENCE = re.compile(r"(?P<var>[^=]+)=keycask:(?P<file>.+)#(?P<name>[^#]+)")

EXAMPLES = """\
examples:
  keycask exec --secrets secrets.env -- ./app --port 8080
  keycask exec --secrets common.json --secrets billing.env --only DB_PASSWORD -- ./app
  keycask exec --secrets secrets.env --prefix APP_ -- env
  keycask exec --env PGPASSWORD=keycask:secrets.env#DB_PASSWORD -- psql -h db"""


def runs_code(name: str) -> bool:
    return name in _CODE_NAMES or name.startswith(_CODE_PREFIXES)


def needs_consent(name: str) -> str | None:
    """What setting ``name`` does that a file alone may not ask for, or None."""
    if runs_code(name):
        return "makes programs load or run other code"
    if name in _TRUST_NAMES:
        return "changes where programs send traffic or whom they trust"
    return None


@dataclass(frozen=True)
class Wanted:
    """One variable to set: its name in the program's environment, and where
    its value is."""

    variable: str
    path: str
    name: str


def parse_reference(text: str) -> Wanted:
    """``NAME=keycask:FILE#SECRET``."""
    found = _REFERENCE.fullmatch(text)
    if found is None:
        # Not quoted: ``--env PASSWORD=hunter2`` is a value, not a reference.
        raise UsageError(
            "--env wants NAME=keycask:FILE#SECRET (a secret's value never goes on the "
            "command line: `keycask secrets set` puts it in a file)"
        )
    variable, name = found["var"], found["name"]
    if not valid_name(variable):
        raise UsageError(f"--env: the variable name must match {NAME_RULE}")
    check_name(name)
    return Wanted(variable, found["file"], name)


def plan(args: argparse.Namespace, files: dict[str, SecretFile]) -> list[Wanted]:
    """Every variable to set, checked: no name twice, every --only found,
    no code-loading name a file alone asked for."""
    prefix: str = args.prefix or ""
    only: set[str] = set(args.only or [])
    wanted: list[Wanted] = []
    for path in args.secrets or []:
        for name in sorted(files[path].secrets):
            if only and name not in only:
                continue
            variable = prefix + name
            why = needs_consent(variable)
            if why is not None and name not in only:
                raise UsageError(
                    f"{path} sets {variable}, which {why}: "
                    "name it with --only (or use --prefix) if that is intended"
                )
            wanted.append(Wanted(variable, path, name))
    missing = sorted(only - {w.name for w in wanted})
    if missing:
        raise UsageError(
            f"--only {', '.join(missing)}: not in "
            + (", ".join(args.secrets) if args.secrets else "any --secrets file")
        )
    wanted.extend(parse_reference(text) for text in args.env or [])
    seen: dict[str, Wanted] = {}
    for item in wanted:
        if item.variable in seen:
            first = seen[item.variable]
            raise UsageError(
                f"{item.variable} comes from both {first.path} and {item.path}: keep one, "
                "or choose with --only, --prefix or --env"
            )
        seen[item.variable] = item
    return wanted


def cmd_exec(args: argparse.Namespace) -> int:
    command: list[str] = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command to run: keycask exec [OPTIONS] -- COMMAND [ARGS...]")
    if not args.secrets and not args.env:
        raise UsageError("no secrets to add: give --secrets FILE or --env NAME=keycask:FILE#S")
    if args.prefix and not valid_name(args.prefix):
        raise UsageError(f"--prefix must match {NAME_RULE}")
    references = [parse_reference(text) for text in args.env or []]
    files: dict[str, SecretFile] = {}
    for path in [*(args.secrets or []), *(r.path for r in references)]:
        if path not in files:
            files[path] = read_file(path)[0]
    for ref in references:
        if ref.name not in files[ref.path].secrets:
            raise UsageError(f"--env {ref.variable}: no secret {ref.name} in {ref.path}")
    wanted = plan(args, files)
    # Everything is decrypted before anything runs: fail closed. A signal
    # meanwhile ends keycask with one line; the handlers are restored before
    # the exec, so the program starts with keycask's own dispositions.
    environment = dict(os.environb)
    pin = pinned_key(args.key_id)
    with outfile.interruptible():
        kms = connect(args)
        client = kms.client()
        for item in wanted:
            value = decrypt(kms, client, files[item.path], item.path, item.name, pin=pin)
            if b"\0" in value:
                raise CommandFailed(f"{item.name} in {item.path} holds a NUL byte")
            environment[os.fsencode(item.variable)] = value
    # Said once everything is decrypted, so that a failure stays one line.
    for item in wanted:
        if item.variable in os.environ:
            say(f"warning: {item.path} sets {item.variable}, replacing the one keycask inherited")
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ for itself at start-up, and an
    # ignored signal stays ignored across execve: without this, `yes | head`
    # in the program would see EPIPE errors instead of ending quietly.
    # subprocess's restore_signals does the same for its children.
    for name in _PYTHON_IGNORES:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvpe(command[0], command, environment)  # noqa: S606 - the user's own command, no shell
    except FileNotFoundError:
        say(f"{command[0]}: command not found")
        return NOT_FOUND
    except OSError as error:
        say(f"{command[0]}: cannot run it: {error.strerror}")
        return NOT_EXECUTABLE
    raise AssertionError("os.execvpe returned")  # pragma: no cover


def add_exec_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "exec",
        help="run a program with secrets from secrets files in its environment",
        description="Decrypt secrets (every one first: if any fails, the program is not "
        "started) and replace keycask with COMMAND, its environment holding them: the "
        "program keeps keycask's process, so its stdin, stdout, stderr, signals and exit "
        "status are its own. A name found in two sources is an error; one keycask inherited "
        "is replaced, with a warning. Names that make programs load code (PATH, LD_*, "
        "PYTHON*, NODE_OPTIONS, GIT_CONFIG_*...) or move their traffic or trust "
        "(HTTPS_PROXY, SSL_CERT_FILE...) are set from a file only when --only names them "
        "or --prefix renames them. Give --key-id (or KEYCASK_SECRETS_KEY_ID) in production: "
        "the file's header alone is not to be trusted. Exit 127: COMMAND not found; "
        "126: it cannot be run.",
        epilog=EXAMPLES,
    )
    parser.add_argument(
        "--secrets",
        action="append",
        metavar="FILE",
        help="a secrets file whose secrets to add (repeatable)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="add only these secrets of the --secrets files (repeatable; each must exist)",
    )
    parser.add_argument(
        "--prefix", metavar="P", help="prepend P to the --secrets files' names (e.g. APP_)"
    )
    parser.add_argument(
        "--env",
        action="append",
        metavar="NAME=keycask:FILE#SECRET",
        help="set NAME to the secret SECRET of FILE (repeatable)",
    )
    parser.add_argument(
        "--key-id",
        metavar="KEY",
        help=f"the key every value must be under (a pin; env {PIN_VARIABLE}): a file naming "
        "another key, or a value made under another, is refused. Production should pin",
    )
    add_kms_options(parser)
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="what to run"
    )
    parser.set_defaults(func=cmd_exec)
