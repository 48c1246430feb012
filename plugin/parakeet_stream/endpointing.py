"""When does a segment end? Silero VAD, the model's <EOU> token, trailing blank frames, or the caller.

The model state is never reset at these automatic endpoints: they only cut the running transcript into
segments, so the stream's tokens stay exactly those of offline decoding. Only ``Stream.flush()`` restarts the
model state (it must decode the pending audio to the end, which needs the final ``keep_all_outputs`` step).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAD_WINDOW = 512  # samples at 16 kHz: the window Silero VAD v5 is trained on


@dataclass(frozen=True)
class EndpointingOptions:
    vad: bool = False
    vad_threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 30
    eou: bool = True
    trailing_blank_ms: int | None = 800
    max_segment_s: float | None = None

    def __post_init__(self) -> None:
        _check_range("vad_threshold", self.vad_threshold, 0.0, 1.0)
        _check_range("min_speech_ms", self.min_speech_ms, 0, 10_000)
        _check_range("min_silence_ms", self.min_silence_ms, 0, 10_000)
        _check_range("speech_pad_ms", self.speech_pad_ms, 0, 2_000)
        if self.trailing_blank_ms is not None:
            _check_range("trailing_blank_ms", self.trailing_blank_ms, 80, 60_000)
        if self.max_segment_s is not None:
            _check_range("max_segment_s", self.max_segment_s, 1.0, 3600.0)


def _check_range(name: str, value, lo, hi) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"endpointing option {name}={value!r} is out of range; accepted: {lo}..{hi}")


_prototype = None


def _silero_prototype():
    global _prototype
    if _prototype is None:
        from silero_vad import load_silero_vad

        _prototype = load_silero_vad()
    return _prototype


class VoiceActivity:
    """Streaming Silero VAD with hysteresis; reports confirmed speech starts and ends as sample positions."""

    def __init__(self, opts: EndpointingOptions, sample_rate: int = 16000) -> None:
        import copy

        import torch

        self._torch = torch
        # The TorchScript model keeps its recurrent state inside, so each stream gets its own copy of one
        # loaded prototype (a deep copy takes ~7 ms; loading ~40 ms).
        self._model = copy.deepcopy(_silero_prototype())
        self._sr = sample_rate
        self._threshold = opts.vad_threshold
        self._neg_threshold = max(opts.vad_threshold - 0.15, 0.01)
        self._min_speech = opts.min_speech_ms * sample_rate // 1000
        self._min_silence = opts.min_silence_ms * sample_rate // 1000
        self._pad = opts.speech_pad_ms * sample_rate // 1000
        self._buf = np.zeros(0, np.float32)
        self._pos = 0  # samples consumed by the model
        self.in_speech = False
        self._candidate: int | None = None  # where possible speech began
        self._silence_from: int | None = None

    def _prob(self, window: np.ndarray) -> float:
        with self._torch.inference_mode():
            return float(self._model(self._torch.from_numpy(window), self._sr))

    def process(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """Feed 16 kHz samples; returns [("start", sample) | ("end", sample)] in order."""
        self._buf = np.concatenate([self._buf, samples])
        changes: list[tuple[str, int]] = []
        while self._buf.shape[0] >= VAD_WINDOW:
            window, self._buf = self._buf[:VAD_WINDOW], self._buf[VAD_WINDOW:]
            p = self._prob(window)
            at = self._pos
            self._pos += VAD_WINDOW
            if not self.in_speech:
                if p >= self._threshold:
                    self._candidate = at if self._candidate is None else self._candidate
                    if self._pos - self._candidate >= self._min_speech:
                        self.in_speech = True
                        self._silence_from = None
                        changes.append(("start", max(0, self._candidate - self._pad)))
                elif p < self._neg_threshold:
                    self._candidate = None
            else:
                if p < self._neg_threshold:
                    self._silence_from = at if self._silence_from is None else self._silence_from
                    if self._pos - self._silence_from >= self._min_silence:
                        self.in_speech = False
                        self._candidate = None
                        # halfway into the confirmed silence (at least the pad): RNNT emits a word's last tokens
                        # a frame or two after its audio, and they must stay in this utterance
                        changes.append(("end", self._silence_from + max(self._pad, self._min_silence // 2)))
                elif p >= self._threshold:
                    self._silence_from = None
        return changes
