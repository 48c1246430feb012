"""Loading Silero VAD leaves torch's thread count alone (its module sets it to 1 on import)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import threading, torch
torch.set_num_threads(2)
from parakeet_stream.endpointing import EndpointingOptions, VoiceActivity
VoiceActivity(EndpointingOptions(vad=True))  # imports silero_vad on this thread
seen = []
t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
t.start(); t.join()
print(torch.get_num_threads(), seen[0])
"""


def test_loading_silero_keeps_the_thread_count_of_this_and_later_threads():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT / 'plugin'}:{ROOT / 'agent'}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    # a later thread (the next engine's inference thread) starts from torch's process-wide default
    assert out.stdout.split() == ["2", "2"]


def test_a_loaded_model_is_exempt_from_the_cyclic_garbage_collector(demo_engine):
    """``Engine.load`` freezes what exists once the model is built: a full collection (~180 ms per ~760 k objects
    on 2 cores, GIL held) would otherwise stall every stream now and then. Objects made later are still tracked."""
    import gc

    model = demo_engine._scheduler.model
    later = [object()]
    tracked = {id(o) for o in gc.get_objects()}  # the permanent generation is not listed
    assert id(model) not in tracked and id(model.encoder) not in tracked
    assert id(later) in tracked
