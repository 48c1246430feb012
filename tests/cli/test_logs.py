"""Structured log lines: the context the engine and adapters log as ``extra`` reaches the line."""
from __future__ import annotations

import logging
import subprocess
import sys

from parakeet_services.logs import KeyValueFormatter


def test_extra_fields_are_appended_as_key_values_quoted_where_needed():
    record = logging.makeLogRecord({"name": "parakeet_stream", "levelname": "WARNING", "levelno": 30,
                                    "msg": "encoder step not captured in a CUDA graph, running eager",
                                    "batch": 256, "reason": 'RuntimeError: bad "capture"', "empty": ""})
    line = KeyValueFormatter("%(levelname)s %(name)s %(message)s").format(record)
    assert line == ('WARNING parakeet_stream encoder step not captured in a CUDA graph, running eager batch=256 '
                    'reason="RuntimeError: bad \\"capture\\"" empty=""')


def test_configure_shows_this_projects_info_lines_and_keeps_others_at_warnings():
    code = """
import logging
from parakeet_services import logs
logs.configure("INFO", quiet_root=True)
logging.getLogger("parakeet_stream").info("engine ready", extra={"model": "espeak-demo-en", "chunk_ms": 160})
logging.getLogger("parakeet_services.dalston.server").info("worker.listening port=%d", 9000)
logging.getLogger("nemo_logger").info("hidden")
logging.getLogger("torch").warning("shown")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("parakeet_stream").exception("stream failed", extra={"stream_id": "s1"})
"""
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    lines = [line.split(" ", 2)[2] for line in err.splitlines() if line[:4].isdigit()]  # past the date and time
    assert lines == ["INFO parakeet_stream engine ready model=espeak-demo-en chunk_ms=160",
                     "INFO parakeet_services.dalston.server worker.listening port=9000",
                     "WARNING torch shown",
                     "ERROR parakeet_stream stream failed stream_id=s1"]
    assert err.rstrip().endswith("ValueError: boom")  # the traceback follows its line
