"""The captions tests' text comparison: exact words, with at most one word lost or changed in transport."""
from tests.livekit.livekit_testkit import CALL, MESSAGE, TIMER, finals_match, word_errors


def test_word_errors_counts_insertions_deletions_and_substitutions():
    assert word_errors(MESSAGE, "send a message anna and say i will be late") == 1
    assert word_errors("a b c", "a x c") == 1
    assert word_errors("a b", "a b c d") == 2
    assert word_errors(TIMER, TIMER) == 0
    assert word_errors(TIMER, CALL) == 6


def test_finals_match_needs_one_final_per_sentence_each_within_one_word():
    assert finals_match(["send a message anna and say i will be late"], [MESSAGE])
    assert not finals_match(["send a message anna and say i will late"], [MESSAGE])
    assert not finals_match([TIMER, TIMER], [TIMER])  # a duplicated caption is a failure
    assert not finals_match([], [TIMER])
    assert not finals_match([CALL], [TIMER])
