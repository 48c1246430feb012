"""From decoded tokens to segments, words and events.

The decoder gives, per step, the stream's new tokens with the encoder frame that emitted each one. A
``SegmentTranscript`` collects them for the current segment and turns them into text and timed words;
``TranscriptTracker`` owns the segment lifecycle (SpeechStarted → Partial* → Final → SpeechEnded) so the
event order promised in ``events.py`` is enforced in one place.
"""
from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

from ..events import EndpointReason, Event, Final, Partial, SpeechEnded, SpeechStarted, Word


class Token(NamedTuple):
    """One decoded token (a tuple: a thousand streams make tens of thousands a second, and a frozen dataclass
    costs ~1 us each to build)."""

    id: int
    frame: int  # global encoder frame on the stream clock (frame_seconds each)
    prob: float


class Vocabulary:
    """Token ids → text pieces, and which ids start a word (SentencePiece's ``▁``)."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        n = tokenizer.vocab_size
        pieces = tokenizer.ids_to_tokens(list(range(n)))
        self.starts_word = [p.startswith("▁") for p in pieces]
        self.eou_ids = frozenset(i for i, p in enumerate(pieces) if p.strip("▁").upper() in ("<EOU>", "<EOB>"))
        # words recur: a dict lookup instead of a SentencePiece decode (~10 us) for each word of each partial
        self._text_of = functools.lru_cache(maxsize=1 << 16)(self._decode)

    def text(self, ids: list[int] | tuple[int, ...]) -> str:
        return self._text_of(tuple(ids)) if ids else ""

    def _decode(self, ids: tuple[int, ...]) -> str:
        return self._tokenizer.ids_to_text(list(ids)).strip()


class SegmentTranscript:
    """One segment's tokens grouped into timed words as they arrive.

    A word is a run of tokens from one that starts with ``▁`` to the next; words already finished are built
    once, and the open word keeps running figures (its ids, first and last frame, summed log-probabilities), so
    each step costs the same however long the segment or the word has grown. The text is the words joined by
    single spaces (what SentencePiece decoding gives, without its doubled spaces around bare ``▁`` pieces).
    """

    def __init__(self, vocab: Vocabulary, frame_s: float, time_base: float) -> None:
        self.vocab = vocab
        self.frame_s = frame_s
        self._time_base = time_base
        self._done: list[Word] = []
        self._done_text = ""
        self._open: list[int] = []  # the open word's token ids
        self._open_first = self._open_last = 0  # the frames of its first and last token
        self._open_logs = 0.0  # the sum of its tokens' log-probabilities
        self._open_word: Word | None = None  # built from them once per change (``_last``)

    @property
    def time_base(self) -> float:
        return self._time_base

    @time_base.setter
    def time_base(self, value: float) -> None:
        self._time_base = value
        self._open_word = None

    def extend(self, tokens: list[Token]) -> None:
        starts_word = self.vocab.starts_word
        for tok in tokens:
            if self._open and starts_word[tok.id]:
                self._close_word()
            if not self._open:
                self._open_first = tok.frame
            self._open.append(tok.id)
            self._open_last = tok.frame
            self._open_logs += math.log(max(tok.prob, 1e-12))
            self._open_word = None

    def _close_word(self) -> None:
        word = self._last()
        if word is not None:
            self._done.append(word)
            self._done_text = f"{self._done_text} {word.text}" if self._done_text else word.text
        self._open = []
        self._open_logs = 0.0
        self._open_word = None

    def _last(self) -> Word | None:
        """The open word (None when it has no tokens, or its tokens spell nothing)."""
        if self._open_word is None and self._open:
            text = self.vocab.text(self._open)
            if not text:
                return None
            base, frame_s = self._time_base, self.frame_s
            self._open_word = Word(text, round(base + self._open_first * frame_s, 3),
                                   round(base + (self._open_last + 1) * frame_s, 3),
                                   round(math.exp(self._open_logs / len(self._open)), 4))
        return self._open_word

    def words(self) -> tuple[Word, ...]:
        return self.snapshot()[1]

    def text(self) -> str:
        return self.snapshot()[0]

    def snapshot(self) -> tuple[str, tuple[Word, ...]]:
        """The text and the words so far."""
        last = self._last()
        if last is None:
            return self._done_text, tuple(self._done)
        text = f"{self._done_text} {last.text}" if self._done_text else last.text
        return text, (*self._done, last)


class TranscriptTracker:
    """Segment state of one stream. ``time_base`` shifts frame times after a flush restarted the model state."""

    def __init__(self, vocab: Vocabulary, frame_s: float) -> None:
        self.vocab = vocab
        self.frame_s = frame_s
        self._time_base = 0.0
        self.segment_id = 0
        self.open = False
        self.started_at = 0.0
        self.last_token_frame: int | None = None
        self.segments_finalised = 0
        self._new_segment()

    def _new_segment(self) -> None:
        self._seg = SegmentTranscript(self.vocab, self.frame_s, self._time_base)
        self._text = ""

    @property
    def time_base(self) -> float:
        """Stream time of encoder frame 0 (moves when a flush restarts the model, or per utterance when
        segmented); the open segment's words follow it."""
        return self._time_base

    @time_base.setter
    def time_base(self, value: float) -> None:
        self._time_base = value
        self._seg.time_base = value

    def time_of_frame(self, frame: int) -> float:
        return round(self.time_base + frame * self.frame_s, 3)

    def start(self, at: float) -> list[Event]:
        if self.open:
            return []
        self.open = True
        self.started_at = round(at, 3)
        return [SpeechStarted(self.segment_id, self.started_at)]

    def add(self, tokens: list[Token], audio_end: float) -> list[Event]:
        """Spoken tokens of one step (no <EOU>) → SpeechStarted if no segment is open, then a Partial."""
        if not tokens:
            return []
        events = [] if self.open else self.start(self.time_of_frame(tokens[0].frame))
        self._seg.extend(tokens)
        self.last_token_frame = tokens[-1].frame
        text, words = self._seg.snapshot()
        delta = text[len(self._text):] if text.startswith(self._text) else text
        self._text = text
        events.append(Partial(self.segment_id, text, delta, words, round(audio_end, 3), time.monotonic()))
        return events

    @property
    def text(self) -> str:
        return self._text

    def words(self) -> tuple[Word, ...]:
        return self._seg.words()

    def endpoint(self, reason: EndpointReason, audio_end: float) -> list[Event]:
        """Close the open segment (if any): its Final, then SpeechEnded."""
        if not self.open:
            return []
        words = self.words()
        end = words[-1].end if words else round(audio_end, 3)
        start = min(self.started_at, words[0].start) if words else self.started_at
        events: list[Event] = [
            Final(self.segment_id, self._text, words, start, max(end, start), reason, round(audio_end, 3),
                  time.monotonic()),
            SpeechEnded(self.segment_id, max(end, start)),
        ]
        self.segment_id += 1
        self.segments_finalised += 1
        self.open = False
        self.last_token_frame = None
        self._new_segment()
        return events
