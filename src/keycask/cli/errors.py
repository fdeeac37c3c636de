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
from keycask.storage.backup import BackupError
from keycask.storage.postgres import StorageConfigError

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
    StorageConfigError,
    # Raised by a command itself (a server's refusal arrives as CallError):
    # about what was given, a malformed document or a key that is not there.
    KMSError,
)
_FAILED: tuple[type[BaseException], ...] = (
    CommandFailed,
    SealError,
    AuditUnavailable,
    StorageIntegrityError,
    BackupError,
    OSError,
)

Command = Callable[..., int]


def run(command: Command, *args: object) -> int:
    """``command(*args)``'s exit status, with the failures above printed."""
    try:
        return command(*args)
    except _USAGE as error:
        print(f"keycask: {error}", file=sys.stderr)
        return USAGE
    except _FAILED as error:
        print(f"keycask: {error}", file=sys.stderr)
        return FAILED
    except Stopped as error:
        print(f"keycask: {error}", file=sys.stderr)
        return FAILED
