"""examples/hello's app with faults switched on by environment variables: the fault tests' own copy.

Shipped next to examples/hello/app/app.py in the test's artifact and run as
``python3 faulty_hello.py --port ${PORT}``. Without a switch it is hello, unchanged.

HELLO_CRASH_ON_START=1  print a line and exit 3 before listening (a release that crashes on start)
HELLO_IGNORE_SIGTERM=1  SIGTERM is ignored: only the grace period's SIGKILL ends it
HELLO_ALLOCATE_MB=N     allocate and touch N MiB before listening (over the unit's MemoryMax: OOM-killed)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import app  # examples/hello/app/app.py, next to this file

if os.environ.get("HELLO_CRASH_ON_START") == "1":
    print(f"hello {app.VERSION} ({app.INSTANCE}): crashing on start, on purpose", flush=True)
    sys.exit(3)

allocate_mb = int(os.environ.get("HELLO_ALLOCATE_MB", "0"))
if allocate_mb:
    print(f"hello {app.VERSION} ({app.INSTANCE}): allocating {allocate_mb} MiB", flush=True)
    held = bytearray(allocate_mb * 2**20)
    for offset in range(0, len(held), 4096):  # touch every page, so the memory is really used
        held[offset] = 1
    print(f"hello {app.VERSION} ({app.INSTANCE}): holding {allocate_mb} MiB", flush=True)

if os.environ.get("HELLO_IGNORE_SIGTERM") == "1":
    register: Callable[[int, Any], Any] = signal.signal

    def ignore_sigterm(signum: int, handler: Any) -> Any:
        return register(signum, signal.SIG_IGN if signum == signal.SIGTERM else handler)

    signal.signal = ignore_sigterm  # app.main's SIGTERM handler is never installed
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"hello {app.VERSION} ({app.INSTANCE}): ignoring SIGTERM", flush=True)

sys.exit(app.main())
