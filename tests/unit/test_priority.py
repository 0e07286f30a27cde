"""CPU time is shared by priority: a background family's runner lowers every thread of its process (and so every
thread it starts later), on a CPU host only. Run in a child process: the test must not lower pytest's own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from vocab.families import FAMILIES

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    sys.path.insert(0, {root!r})
    from runners.common import lower_priority
    stop = threading.Event()
    before = threading.Thread(target=stop.wait, daemon=True); before.start()  # a thread that exists before
    time.sleep(0.05)
    changed = lower_priority(10)
    niced = {{}}
    after = threading.Thread(target=lambda: niced.update(after=os.getpriority(os.PRIO_PROCESS, 0)), daemon=True)
    after.start(); after.join()
    nices = []
    for tid in (int(t) for t in os.listdir("/proc/self/task")):
        try:
            nices.append(os.getpriority(os.PRIO_PROCESS, tid))
        except ProcessLookupError:  # the thread that has just ended may still be listed
            pass
    print(json.dumps([changed, nices, niced["after"]]))
    stop.set()
""")


def test_lower_priority_reaches_every_thread_and_their_children():
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    changed, nices, after = json.loads(out)
    assert changed >= 2  # the main thread and the one started before
    assert set(nices) == {10} and after == 10


def test_only_whole_video_work_runs_in_the_background():
    assert [name for name, family in FAMILIES.items() if family.background] == ["flow"]
