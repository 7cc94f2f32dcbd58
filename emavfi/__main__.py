"""`python -m emavfi ...`: see emavfi.cli."""
import os
import signal
import sys

from emavfi.buffers import start_with_huge_pages

start_with_huge_pages()  # before anything is imported or started: it may start this command again in place


def _interrupted_while_starting(signum: int, frame: object) -> None:
    # Ctrl-C while torch & co. are importing: nothing has been written yet, and a KeyboardInterrupt raised
    # inside an extension module's import leaves a traceback (or a half-imported numpy): leave at once.
    os.write(2, b"\ninterrupted before the command started; nothing was written\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
from emavfi.cli import main  # noqa: E402 - the handler above must be in place first

signal.signal(signal.SIGINT, signal.default_int_handler)
code = main()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: a late Ctrl-C must not break the clean-up
sys.exit(code)
