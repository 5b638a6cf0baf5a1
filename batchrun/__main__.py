"""The `batchrun` command and `python -m batchrun`.

Ctrl-C is taken over before anything else loads: importing the CLI takes ~0.4 s, and a
KeyboardInterrupt raised inside an import prints a traceback. Until a command starts its work
(`batchrun.interrupts.unwinding`), Ctrl-C prints one line and exits 130 at once: nothing is open
yet that would need closing. (Python's own start-up before this file runs, `site` and the .pth
files, is out of our reach.)
"""

from __future__ import annotations

import os
import signal


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"batchrun: interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    from batchrun.cli import main as cli_main  # after the handler: these imports are the slow part

    cli_main()


if __name__ == "__main__":
    main()
