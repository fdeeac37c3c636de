"""One way every ``keycask`` command ends: its exit status and, on failure,
one line ``keycask: <why>`` on stderr (never a traceback).

    0  ok
    1  the operation failed: the server refused it or could not be reached,
       a seal did not open, a check found a problem, a file could not be
       written
    2  usage error: the command line, a file or a data directory given
       cannot be used as given (argparse's own errors exit 2 as well)
  128+N  signal N ended the command (the shell's convention): 130 for
       SIGINT (Ctrl-C), 143 for SIGTERM, 129 for SIGHUP

Every line printed is made printable first (``printable``): a failure's
text often quotes what a file, a message or a server said (a key ARN, an
error message), and a control character there must not reach a terminal,
where an escape sequence can clear the screen or forge a line.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from keycask import config
from keycask.errors import AuditUnavailable, KMSError, SealError, StorageIntegrityError

OK, FAILED, USAGE = 0, 1, 2

EPILOG = """exit status:
  0  ok
  1  the operation failed: the server refused it or could not be reached, a seal
     did not open, a check found a problem
  2  usage error: the command line, a file or a data directory given cannot be used
  130, 143, 129  interrupted by SIGINT, SIGTERM, SIGHUP (128 + the signal's number)"""
INTERRUPTED = 128 + signal.SIGINT


class UsageError(Exception):
    """What was given cannot be used (exit 2); the text is what to print."""


class CommandFailed(Exception):
    """The operation was tried and failed (exit 1); the text is what to print."""


class Stopped(BaseException):
    """A signal ended the command (exit 128 + its number, ``signum``); the
    text is what to print. A BaseException, as KeyboardInterrupt is,
    because the handler raises it wherever the process stands, often inside
    a library (botocore, the Encryption SDK) whose ``except Exception``
    would otherwise swallow it and carry on."""

    def __init__(self, text: str, signum: int = signal.SIGINT) -> None:
        super().__init__(text)
        self.signum = signum


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on rather than
    show (C0 and C1 controls, DEL, line and paragraph separators...)
    written as its escape, ``\\x1b`` or ``\\u2028``: text that came from a
    file, a message or a server cannot clear the screen or start a line."""
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def say(text: str) -> None:
    """One line ``keycask: <text>`` on stderr, made printable."""
    print(f"keycask: {printable(text)}", file=sys.stderr)


_USAGE: tuple[type[BaseException], ...] = (
    UsageError,
    config.ConfigError,
    # Raised by a command itself (a server's refusal arrives as CallError):
    # about what was given, a malformed document or a key that is not there.
    KMSError,
)
_FAILED: tuple[type[BaseException], ...] = (
    CommandFailed,
    SealError,
    AuditUnavailable,
    StorageIntegrityError,
    OSError,
)
# Errors of modules a command may never import (the store's), named rather
# than imported: importing them cost every command, `keycask exec` at each
# start of an application included, 0.1 s. An exception of a module that was
# not imported cannot have been raised.
_USAGE_ELSEWHERE = (("keycask.storage.postgres", "StorageConfigError"),)
_FAILED_ELSEWHERE = (("keycask.storage.backup", "BackupError"),)


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    return tuple(
        getattr(sys.modules[module], name) for module, name in names if module in sys.modules
    )


Command = Callable[..., int]


def run(command: Command, *args: object) -> int:
    """``command(*args)``'s exit status, with the failures above printed."""
    try:
        return command(*args)
    except Stopped as error:
        say(str(error))
        return 128 + error.signum
    except KeyboardInterrupt:
        # SIGINT before (or after) a command set its own handler, e.g.
        # during the TLS connect or the SDK's import.
        say("interrupted by SIGINT")
        return INTERRUPTED
    except Exception as error:
        if isinstance(error, _USAGE + _loaded(_USAGE_ELSEWHERE)):
            say(str(error))
            return USAGE
        if isinstance(error, _FAILED + _loaded(_FAILED_ELSEWHERE)):
            say(str(error))
            return FAILED
        raise
