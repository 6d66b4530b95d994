"""Users' API keys in the journal: sealed with the journal key or never written, and no residue of ended tasks."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import pytest

from lab.system.config import ClusterConfig
from services.master.__main__ import main
from services.master.dispatch import Task
from services.master.journal import NOT_KEPT, SEALED, Journal, JournalKeyError, parse_journal_key
from services.master.results import KEY_NOT_KEPT_NOTE
from services.master.settings import MasterSettings
from services.protocol import AiResponse, UserQuery
from tests.unit.master_fakes import SESSION, Clock, Rig, started

USER_KEY = "AIza-unit-" + base64.b16encode(os.urandom(8)).decode()
QUESTION = "what does the journal keep of QUESTION-" + base64.b16encode(os.urandom(6)).decode()


def new_key() -> bytes:
    return os.urandom(32)


def task(task_id: str = "task-1", api_key: str = USER_KEY, query: str = "q", at: int = 1) -> Task:
    return Task(task_id=task_id, session_id=SESSION, query=query, submitted_ms=at, api_key=api_key)


def on_disk(path: Path) -> bytes:
    """Every byte of the journal's files: the database, its WAL and its shared memory."""
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def stored_key(path: Path, task_id: str) -> str | None:
    db = sqlite3.connect(path)
    try:
        value: str | None = db.execute("SELECT api_key FROM tasks WHERE task_id=?", (task_id,)).fetchone()[0]
        return value
    finally:
        db.close()


def response(task_id: str) -> AiResponse:
    return AiResponse(taskId=task_id, query="q", response="a", workerId="w", processingTime=1, timestamp=2)


# -- sealed with a journal key ----------------------------------------------------------------------------------


def test_a_sealed_key_is_read_back_with_the_same_journal_key(tmp_path: Path) -> None:
    path, key = tmp_path / "journal.sqlite3", new_key()
    journal = Journal(path, key)
    journal.accepted(task())
    assert USER_KEY.encode() not in on_disk(path)
    journal.close()
    assert USER_KEY.encode() not in on_disk(path)
    assert (stored_key(path, "task-1") or "").startswith(SEALED)

    again = Journal(path, key)
    assert [t.api_key for t in again.open_tasks()] == [USER_KEY]
    assert again.keys_not_kept() == set()
    again.close()


def test_each_row_has_its_own_nonce_and_is_bound_to_its_task(tmp_path: Path) -> None:
    path, key = tmp_path / "journal.sqlite3", new_key()
    journal = Journal(path, key)
    journal.accepted(task("task-1"))
    journal.accepted(task("task-2", at=2))
    journal.close()
    one, two = stored_key(path, "task-1"), stored_key(path, "task-2")
    assert one != two  # the same user key, sealed twice
    db = sqlite3.connect(path)
    db.execute("UPDATE tasks SET api_key=? WHERE task_id='task-2'", (one,))  # moved to another task
    db.commit()
    db.close()
    with pytest.raises(JournalKeyError, match="1 users' API keys"):
        Journal(path, key)
    db = sqlite3.connect(path)
    db.execute("UPDATE tasks SET api_key=? WHERE task_id='task-2'", (SEALED + "damaged",))
    db.commit()
    db.close()
    with pytest.raises(JournalKeyError, match="1 users' API keys"):
        Journal(path, key)


def test_a_wrong_journal_key_fails_clearly_and_names_no_key(tmp_path: Path) -> None:
    path, key = tmp_path / "journal.sqlite3", new_key()
    journal = Journal(path, key)
    journal.accepted(task())
    journal.close()
    wrong = new_key()
    with pytest.raises(JournalKeyError) as failed:
        Journal(path, wrong)
    message = str(failed.value)
    assert "holds 1 users' API keys sealed with a journal key" in message
    assert "the journal key given does not open them" in message
    assert USER_KEY not in message and base64.b64encode(wrong).decode() not in message
    with pytest.raises(JournalKeyError, match="no journal key was given"):
        Journal(path)
    assert (stored_key(path, "task-1") or "").startswith(SEALED)  # nothing was dropped


def test_a_previous_key_opens_the_journal_and_its_keys_are_sealed_again_with_the_new_one(tmp_path: Path) -> None:
    path, old, new = tmp_path / "journal.sqlite3", new_key(), new_key()
    journal = Journal(path, old)
    journal.accepted(task())
    journal.close()
    rotated = Journal(path, new, previous_keys=[old])
    assert [t.api_key for t in rotated.open_tasks()] == [USER_KEY]
    rotated.close()
    sealed = stored_key(path, "task-1")
    after = Journal(path, new)  # the previous key is no longer needed
    assert [t.api_key for t in after.open_tasks()] == [USER_KEY]
    after.close()
    assert stored_key(path, "task-1") == sealed  # sealed with the current key: left as it is


def test_a_malformed_journal_key_is_refused_without_showing_it() -> None:
    assert len(parse_journal_key(base64.b64encode(b"k" * 32).decode())) == 32
    assert len(parse_journal_key(base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n")) == 32
    for bad in ("not-base64!!", base64.b64encode(b"short").decode(), "x" * 44):
        with pytest.raises(JournalKeyError) as failed:
            parse_journal_key(bad, "JOURNAL_KEY_FILE")
        assert str(failed.value).startswith("JOURNAL_KEY_FILE must be the base64 of 32 random bytes")
        assert bad not in str(failed.value)


def test_the_master_does_not_start_with_a_malformed_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = tmp_path / "journal_key"
    secret.write_text("Zm9vYmFy-too-short\n")
    monkeypatch.delenv("JOURNAL_KEY", raising=False)
    monkeypatch.setenv("JOURNAL_KEY_FILE", str(secret))
    monkeypatch.setenv("JOURNAL_PATH", str(tmp_path / "journal.sqlite3"))
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("master: bad setting: JOURNAL_KEY_FILE must be the base64 of 32 random bytes")
    assert err.count("\n") == 1 and "too-short" not in err
    assert not (tmp_path / "journal.sqlite3").exists()


def test_the_master_does_not_start_with_a_journal_key_that_does_not_open_its_journal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, new_key())
    journal.accepted(task())
    journal.close()
    other = base64.b64encode(new_key()).decode()
    monkeypatch.delenv("JOURNAL_KEY_FILE", raising=False)
    monkeypatch.setenv("JOURNAL_KEY", other)
    monkeypatch.setenv("JOURNAL_PATH", str(path))
    assert main([]) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"JOURNAL_KEY: the journal {path} holds 1 users' API keys sealed with a journal key")
    assert other not in caplog.text and USER_KEY not in caplog.text


# -- without a journal key ----------------------------------------------------------------------------------------


def test_without_a_journal_key_the_users_key_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    journal.accepted(task())
    assert USER_KEY.encode() not in on_disk(path)
    assert stored_key(path, "task-1") == NOT_KEPT
    assert [t.api_key for t in journal.open_tasks()] == [USER_KEY]  # this run has it, in memory
    journal.close()
    again = Journal(path)
    assert [t.api_key for t in again.open_tasks()] == [""]
    assert again.keys_not_kept() == {"task-1"}
    again.close()


def test_a_task_without_a_key_is_not_marked(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.accepted(task(api_key=""))
    assert stored_key(tmp_path / "journal.sqlite3", "task-1") is None
    assert journal.keys_not_kept() == set()
    journal.close()


async def test_a_task_restored_without_its_key_says_so_in_its_answer(tmp_path: Path) -> None:
    path, clock = tmp_path / "journal.sqlite3", Clock()
    before = await started(Journal(path), clock)
    await before.worker("go-worker-a")
    running = await ask_with_key(before, "running")
    waiting = await ask_with_key(before, "waiting")
    running_task = before.last_task("go-worker-a")
    assert running_task.api_key == USER_KEY  # in memory, the worker gets it
    before.journal.close()

    after = await started(Journal(path), clock)
    await after.master.session_connected(SESSION)
    # The running task's worker had the key: its answer needs no note.
    assert await after.answer(running_task) == (True, "accepted")
    sent_again = after.last_task("go-worker-a")
    assert (sent_again.task_id, sent_again.api_key) == (waiting, "")
    assert await after.answer(sent_again, "offline answer") == (True, "accepted")
    answers = {a.taskId: a for a in after.sender.answers()}
    assert answers[running].response == "42"
    assert answers[waiting].response.startswith("offline answer\n\n(Note: your API key was not kept")
    assert KEY_NOT_KEPT_NOTE in answers[waiting].response and answers[waiting].error == ""


async def ask_with_key(r: Rig, text: str) -> str:
    r.master.deliveries.expects_acks(SESSION)
    ack = await r.master.submit(SESSION, UserQuery(query=text, apiKey=USER_KEY))
    assert ack.accepted and ack.taskId
    return ack.taskId


# -- journals of older versions, and what ended tasks leave behind --------------------------------------------------


@pytest.mark.parametrize("with_key", [True, False], ids=["sealed", "not-kept"])
def test_a_key_in_the_clear_from_an_older_journal_is_sealed_or_dropped(tmp_path: Path, with_key: bool) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=0")  # written before secure_delete
    for i in range(20):
        db.execute(
            "INSERT INTO tasks (task_id, session_id, query, api_key, submitted_ms, state) VALUES (?, ?, ?, ?, ?, ?)",
            (f"old-{i}", SESSION, "q", USER_KEY, i, "queued"),
        )
    db.execute("DELETE FROM tasks WHERE task_id != 'old-0'")  # freed pages with keys in them
    db.commit()
    db.close()
    assert USER_KEY.encode() in on_disk(path)

    key = new_key() if with_key else None
    journal = Journal(path, key)
    assert USER_KEY.encode() not in on_disk(path)
    assert [t.api_key for t in journal.open_tasks()] == [USER_KEY]  # this run still has it in memory
    journal.close()
    assert USER_KEY.encode() not in on_disk(path)
    stored = stored_key(path, "old-0") or ""
    assert stored.startswith(SEALED) if with_key else stored == NOT_KEPT


def test_nothing_of_an_ended_task_is_left_in_the_files_after_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, new_key())
    for i in range(6):
        t = task(f"task-{i}", query=f"{QUESTION} {i}", at=i)
        journal.accepted(t)
        journal.assigned(t)
        journal.finished(t, response(t.task_id), False, 10 + i)
        journal.delivered(t.task_id, 20 + i)
    assert QUESTION.encode() in on_disk(path)  # old copies of pages in the WAL
    assert journal.checkpoint()
    assert not journal.checkpoint()  # nothing written since
    assert QUESTION.encode() not in on_disk(path)
    assert (tmp_path / "journal.sqlite3-wal").stat().st_size == 0
    journal.close()


def test_an_open_task_survives_the_checkpoint(tmp_path: Path) -> None:
    path, key = tmp_path / "journal.sqlite3", new_key()
    journal = Journal(path, key)
    journal.accepted(task(query=QUESTION))
    assert journal.checkpoint()
    journal.close()
    assert [(t.query, t.api_key) for t in Journal(path, key).open_tasks()] == [(QUESTION, USER_KEY)]


# -- the lab ----------------------------------------------------------------------------------------------------------


def test_each_local_cluster_gives_its_master_a_fresh_journal_key_in_its_environment_only() -> None:
    one, two = (ClusterConfig(web_port=1, grpc_port=2, mqtt_port=3) for _ in range(2))
    env = one.master_env({"JOURNAL_KEY_FILE": "/shell/key"})
    assert MasterSettings.from_env(env).journal_key == one.journal_key
    assert "JOURNAL_KEY_FILE" not in env
    assert len(parse_journal_key(one.journal_key)) == 32 and one.journal_key != two.journal_key
    assert one.journal_key not in repr(one)
    assert "JOURNAL_KEY" not in one.worker_env("w", {}) and "JOURNAL_KEY" not in one.broker_env({})


def test_the_master_reads_the_key_before_a_rotation_from_its_own_variable() -> None:
    import base64
    import os

    from services.master.__main__ import read_journal_key
    from services.master.settings import MasterSettings

    old, new = os.urandom(32), os.urandom(32)
    env = {"JOURNAL_KEY": base64.b64encode(new).decode(), "JOURNAL_KEY_PREVIOUS": base64.b64encode(old).decode()}
    settings = MasterSettings.from_env(env)
    assert (read_journal_key(settings), read_journal_key(settings, "journal_key_previous")) == (new, old)
    bad = MasterSettings.from_env({**env, "JOURNAL_KEY_PREVIOUS": "not a key"})
    with pytest.raises(ValueError, match="JOURNAL_KEY_PREVIOUS") as caught:
        read_journal_key(bad, "journal_key_previous")
    assert "not a key" not in str(caught.value)
