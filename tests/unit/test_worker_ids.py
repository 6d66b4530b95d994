"""Tests of the worker id convention: `<language>-worker-<short random>`."""

from __future__ import annotations

import re

import pytest

from services.protocol import make_worker_id, worker_language
from services.protocol.messages import WORKER_ID_PATTERN


@pytest.mark.parametrize("language", ["python", "go", "java"])
def test_a_new_worker_id_names_its_language_and_six_hex_digits(language: str) -> None:
    worker_id = make_worker_id(language)
    assert re.fullmatch(rf"{language}-worker-[0-9a-f]{{6}}", worker_id)
    assert re.fullmatch(WORKER_ID_PATTERN, worker_id)  # usable in a topic
    assert worker_language(worker_id) == language


def test_new_worker_ids_differ() -> None:
    assert len({make_worker_id("go") for _ in range(50)}) > 45


@pytest.mark.parametrize("language", ["", "a-worker-b"])
def test_a_language_that_would_not_read_back_is_refused(language: str) -> None:
    with pytest.raises(ValueError):
        make_worker_id(language)


@pytest.mark.parametrize(
    ("worker_id", "language"),
    [
        ("python-worker-3f9a1c", "python"),
        ("go-worker-ab12", "go"),
        ("java-worker-x", "java"),
        ("python-worker-sim-3", "python"),
        ("stranger", None),
        ("-worker-abc", None),
        ("worker-abc", None),
    ],
)
def test_the_language_is_read_from_a_worker_id_when_it_follows_the_convention(
    worker_id: str, language: str | None
) -> None:
    assert worker_language(worker_id) == language
