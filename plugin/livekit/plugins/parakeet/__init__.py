# Copyright 2026 The parakeet-stream authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Self-hosted streaming speech-to-text for LiveKit Agents with NVIDIA NeMo cache-aware Parakeet models.

Every ``STT`` of one process with the same model settings shares one engine (one model on one device),
whose inference thread batches all live streams, so the asyncio loop never runs the model.
"""

from .models import ChunkSizesMs, ParakeetLanguages, ParakeetModels
from .stt import STT, SpeechStream
from .version import __version__

__all__ = ["STT", "SpeechStream", "ParakeetModels", "ParakeetLanguages", "ChunkSizesMs", "__version__"]

from livekit.agents import Plugin

from .log import logger


class ParakeetPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)

    def download_files(self) -> None:
        """Fetch the checkpoints named in ``PARAKEET_MODEL`` (comma-separated; default: the plugin's default
        model) for ``python -m livekit.agents download-files``, so workers start without network access."""
        import os

        from .stt import DEFAULT_MODEL, download_model

        for name in os.environ.get("PARAKEET_MODEL", DEFAULT_MODEL).split(","):
            if name.strip():
                download_model(name.strip())


Plugin.register_plugin(ParakeetPlugin())

# Cleanup docs of unexported modules
_module = dir()
NOT_IN_ALL = [m for m in _module if m not in __all__]

__pdoc__ = {}

for n in NOT_IN_ALL:
    __pdoc__[n] = False
