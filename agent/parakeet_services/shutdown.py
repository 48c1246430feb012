"""How a service process ends once it has stopped cleanly."""
from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_skipping_native_teardown(code: int) -> NoReturn:
    """End the process once the service has drained and closed: logs flushed, then ``os._exit``.

    A normal interpreter exit then tears down the native libraries (LiveKit's WebRTC stack, torch's and NeMo's
    modules and thread pools) in whatever order their exit handlers run: 1-2 s on 2 cores, and after a clean drain
    it aborted now and then ("terminate called without an active exception", exit -6), so an orchestrator saw a
    slow stop or a crash where the stop was clean. Nothing is left to save at this point."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
