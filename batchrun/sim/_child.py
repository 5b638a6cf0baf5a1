"""Entry point of SimProcess's child: `python -m batchrun.sim._child CONFIG_JSON HOST PORT`.

Reports `{"port": N}` on stdout once listening, then serves until stdin closes (the parent
closed it, or died) or SIGTERM / SIGINT arrives, and stops cleanly either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from batchrun.sim.config import SimConfig
from batchrun.sim.server import run_loop, serve_sim


async def _main(config: SimConfig, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        # EOF on stdin means the parent is gone: never outlive it.
        if not os.read(stdin, 4096):
            stop.set()

    loop.add_reader(stdin, on_stdin)
    try:
        async with serve_sim(config, host, port) as sim:
            sys.stdout.write(json.dumps({"port": sim.port, "pid": os.getpid()}) + "\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        loop.remove_reader(stdin)


if __name__ == "__main__":
    try:
        run_loop(_main(SimConfig.from_json(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
    except OSError as err:  # e.g. the port is taken: one line for the parent's error, no traceback
        sys.stderr.write(f"batchrun sim: cannot listen on {sys.argv[2]}:{sys.argv[3]}: {err.strerror}\n")
        sys.exit(2)
