"""Names the plugin knows; any other NeMo cache-aware checkpoint name or ``.nemo`` path works too."""
from typing import Literal

ParakeetModels = Literal[
    # 120 M, English, emits an <EOU> token: fast end of turn for voice agents (160 ms chunks)
    "nvidia/parakeet_realtime_eou_120m-v1",
    # 600 M, English with punctuation and capitals; chunks 80/160/560/1120 ms (GPU)
    "nvidia/nemotron-speech-streaming-en-0.6b",
    # 114 M hybrid RNNT/CTC, chunks 80/160/560/1120 ms; the CPU choice
    "nvidia/stt_en_fastconformer_hybrid_large_streaming_multi",
    # 3.35 M demo bundled with parakeet-stream: espeak-ng voices, closed vocabulary (tests, offline demo)
    "espeak-demo-en",
]

ParakeetLanguages = Literal["en"]

ChunkSizesMs = Literal[80, 160, 560, 1120]
