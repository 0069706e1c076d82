"""Shared plumbing of the console scripts: user errors become one message, not a traceback;
Lightning's messages a user cannot act on are filtered out while the script runs
(:mod:`core.terminal`)."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable


def cli(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Run a console script: a :class:`core.CoreError` prints ``error: ...`` and exits 2; the
    filters of :func:`core.terminal.quiet_terminal` hold while it runs."""
    from core.errors import CoreError, Stopped
    from core.terminal import quiet_terminal

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        core_log = logging.getLogger("core")
        saved = core_log.level, core_log.propagate
        core_log.addHandler(handler)
        core_log.setLevel(logging.INFO)  # plugins' notes (e.g. FFCV's adjustments) reach the user
        core_log.propagate = False
        try:
            with quiet_terminal():
                return main(argv)
        except Stopped as exc:  # SIGTERM / SIGINT while training: a checkpoint was saved
            if os.environ.get("LOCAL_RANK", "0") == "0":  # under DDP every rank stops; one says so per node
                print(str(exc), file=sys.stderr)
            return exc.exit_status
        except CoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # output piped into head & co.: stop quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (keeps the interpreter's final flush quiet)
            return 0
        except KeyboardInterrupt:
            print("interrupted; continue the run with --resume", file=sys.stderr)
            return 130
        except SystemExit as exc:  # Lightning's stop on SIGTERM outside training exits with status 0
            if not _lightning_sigterm(exc):
                raise
            print("stopped by SIGTERM before the command finished; what it was writing is not saved\n"
                  "  run the same command again", file=sys.stderr)
            return 128 + signal.SIGTERM
        finally:
            core_log.removeHandler(handler)
            core_log.setLevel(saved[0])
            core_log.propagate = saved[1]

    return wrapper


def _lightning_sigterm(exc: SystemExit) -> bool:
    """``exc`` is Lightning's ``SIGTERMException`` (a ``SystemExit`` raised by its loops)."""
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")  # not imported: not raised by it
    return exceptions is not None and isinstance(exc, exceptions.SIGTERMException)
