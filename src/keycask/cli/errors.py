"""One way every ``keycask`` command ends: its exit status and, on failure,
one line ``keycask: <why>`` on stderr (never a traceback).

    0  ok
    1  the operation failed: the server refused it or could not be reached,
       a seal did not open, a check found a problem, a file could not be
       written
    2  usage error: the command line, a file or a data directory given
       cannot be used as given (argparse's own errors exit 2 as well)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from keycask import config
from keycask.errors import AuditUnavailable, KMSError, SealError, StorageIntegrityError

OK, FAILED, USAGE = 0, 1, 2

EPILOG = """exit status:
  0  ok
  1  the operation failed: the server refused it or could not be reached, a seal
     did not open, a check found a problem
  2  usage error: the command line, a file or a data directory given cannot be used"""


class UsageError(Exception):
    """What was given cannot be used (exit 2); the text is what to print."""


class CommandFailed(Exception):
    """The operation was tried and failed (exit 1); the text is what to print."""


class Stopped(BaseException):
    """SIGTERM or SIGINT ended the command (exit 1); the text is what to
    print. A BaseException, as KeyboardInterrupt is, because the handler
    raises it wherever the process stands, often inside a library (botocore,
    the Encryption SDK) whose ``except Exception`` would otherwise swallow
    it and carry on."""


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
        print(f"keycask: {error}", file=sys.stderr)
        return FAILED
    except Exception as error:
        if isinstance(error, _USAGE + _loaded(_USAGE_ELSEWHERE)):
            print(f"keycask: {error}", file=sys.stderr)
            return USAGE
        if isinstance(error, _FAILED + _loaded(_FAILED_ELSEWHERE)):
            print(f"keycask: {error}", file=sys.stderr)
            return FAILED
        raise
