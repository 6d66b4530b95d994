"""Unit tests of lab.system.leaders: which master leads, from their `/leader` answers."""

from __future__ import annotations

import pytest

from lab.system.leaders import leading_epoch, newest_leader, wait_leader


def test_only_a_leading_answer_with_an_integer_epoch_leads() -> None:
    assert leading_epoch({"leading": True, "epoch": 7, "name": "m1"}) == 7
    assert leading_epoch({"leading": False, "epoch": None, "name": "m2"}) is None
    assert leading_epoch({"leading": True, "epoch": None}) is None  # a master alone: no epoch to compare
    assert leading_epoch(None) is None and leading_epoch("up") is None


def test_of_two_that_say_they_lead_the_newer_epoch_wins() -> None:
    answers = [("m1", {"leading": True, "epoch": 3}), ("m2", None), ("m3", {"leading": True, "epoch": 9})]
    assert newest_leader(answers) == ("m3", 9)
    assert newest_leader([("m1", {"leading": False})]) is None


def test_waiting_returns_the_first_leader_newer_than_asked_and_times_out_otherwise() -> None:
    seen = iter([None, ("m1", 2), ("m2", 5)])
    assert wait_leader(lambda: next(seen), timeout=5, after_epoch=2, poll=0) == ("m2", 5)
    with pytest.raises(TimeoutError, match="above 5"):
        wait_leader(lambda: ("m2", 5), timeout=0.05, after_epoch=5, poll=0.01)
