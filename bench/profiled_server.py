"""uvicorn under cProfile, for machines where py-spy cannot attach (seen in a Firecracker VM:
"Failed to find python version from target process"): ``login_bench.py --profile DIR
--profiler cprofile`` starts Transom through this script.

cProfile sees one thread, so there is one profiler for the event loop and one per thread-pool
thread (every ``anyio.to_thread.run_sync`` call, which is how Starlette and FastAPI run sync
endpoints and dependencies, runs its function under its thread's profiler). SIGUSR1 clears
and starts them, SIGUSR2 stops them and writes the merged functions, by cumulative and own
time, to ``$PROFILE_OUT.<label>.txt`` (and ``.prof`` for pstats), the label read from
``$PROFILE_OUT.label`` (the bench writes the phase's name there). Profiling slows the
server about twofold: read the shares.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio.to_thread
import uvicorn.main

_active = False
_serial = 0
#: bumped by every start, so each thread makes a fresh profiler for the new phase
_generation = 0
_profiles: list[cProfile.Profile] = []
#: every profiler ever made stays referenced: one destroyed while another is being enabled
#: makes cProfile refuse ("Cannot install a profile function while another ...")
_kept: list[cProfile.Profile] = []
_local = threading.local()
_guard = threading.Lock()
_run_sync = anyio.to_thread.run_sync


def _thread_profile() -> cProfile.Profile:
    generation, profile = getattr(_local, "profile", (-1, None))
    if profile is None or generation != _generation:
        profile = cProfile.Profile()
        _local.profile = (_generation, profile)
        with _guard:
            _profiles.append(profile)
            _kept.append(profile)
    return profile


async def _profiled_run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def call(*inner: Any) -> Any:
        if not _active:
            return func(*inner)
        profile = _thread_profile()
        profile.enable()
        try:
            return func(*inner)
        finally:
            profile.disable()

    return await _run_sync(call, *args, **kwargs)


def _start(_signum: int, _frame: FrameType | None) -> None:
    global _active, _generation
    with _guard:
        _profiles.clear()
        _generation += 1
    _active = True
    _thread_profile().enable()  # the event loop's thread: signal handlers run on it


def _stop(_signum: int, _frame: FrameType | None) -> None:
    global _active, _serial
    _active = False
    _thread_profile().disable()
    _serial += 1
    with _guard:
        profiles = list(_profiles)
        _profiles.clear()
    profiles = list({id(p): p for p in profiles}.values())
    print(f"profiled_server: {len(profiles)} profilers", file=sys.stderr)
    text = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=text)
    for profile in profiles[1:]:
        stats.add(profile)
    stats.sort_stats("cumulative").print_stats(150)
    stats.sort_stats("tottime").print_stats(80)
    prefix = os.environ["PROFILE_OUT"]
    try:  # the bench names the phase it is about to run
        with open(f"{prefix}.label") as label_file:
            label = label_file.read().strip()
    except OSError:
        label = str(_serial)
    stats.dump_stats(f"{prefix}.{label}.prof")  # for pstats / snakeviz
    with open(f"{prefix}.{label}.txt", "w") as out:
        out.write(text.getvalue())


if __name__ == "__main__":
    anyio.to_thread.run_sync = _profiled_run_sync  # type: ignore[assignment]
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv[0] = "uvicorn"
    uvicorn.main.main()
