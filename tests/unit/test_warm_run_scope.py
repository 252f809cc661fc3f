"""What a warm runner's RunScope gives each run: the runner's own environment and
an empty temporary directory, whatever the run before it left behind."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from waypost.runner.warm import RunScope


@pytest.fixture
def scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunScope]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("WAYPOST_ATTEMPT_TOKEN", "first-attempt-secret")
    monkeypatch.setattr(tempfile, "tempdir", None)
    made = RunScope()
    yield made
    made.cleanup()


def test_each_run_sees_the_runners_environment_only(scope: RunScope) -> None:
    assert "WAYPOST_ATTEMPT_TOKEN" not in os.environ
    with scope.run():
        os.environ["LEFT_BY_RUN_A"] = "a"
        os.environ["HOME"] = "/changed-by-run-a"
    with scope.run() as tmp:
        assert "LEFT_BY_RUN_A" not in os.environ
        assert os.environ["HOME"] == scope.base_env["HOME"]
        assert os.environ["TMPDIR"] == tmp == tempfile.gettempdir()
    assert "TMPDIR" not in os.environ or os.environ["TMPDIR"] == scope.base_env["TMPDIR"]


def test_a_run_that_leaves_its_directory_empty_passes_it_on(scope: RunScope) -> None:
    with scope.run() as first:
        Path(first, "scratch").write_text("x")
        os.unlink(os.path.join(first, "scratch"))
    with scope.run() as second:
        assert second == first and os.listdir(second) == []


def test_what_a_run_leaves_is_gone_before_the_next(scope: RunScope, tmp_path: Path) -> None:
    with scope.run() as first:
        Path(first, "left-behind.txt").write_text("run a")
        Path(first, "sub").mkdir()
        Path(first, "sub", "deep.txt").write_text("run a")
    assert not os.path.exists(first)
    with scope.run() as second:
        assert second != first and os.listdir(second) == []
        assert Path(second).parent == tmp_path


@pytest.mark.parametrize("how", ["removed", "replaced by a file", "unreadable"])
def test_a_directory_the_run_broke_is_made_anew(scope: RunScope, how: str) -> None:
    with scope.run() as first:
        if how == "removed":
            os.rmdir(first)
        elif how == "replaced by a file":
            os.rmdir(first)
            Path(first).write_text("not a directory")
        else:
            os.chmod(first, 0)
    with scope.run() as second:
        assert os.path.isdir(second) and os.listdir(second) == []
        assert os.stat(second).st_mode & stat.S_IRWXU == stat.S_IRWXU
        Path(second, "ok").write_text("writable")
    if how == "replaced by a file":
        os.unlink(first)


def test_cleanup_removes_the_directory(scope: RunScope) -> None:
    with scope.run() as tmp:
        pass
    scope.cleanup()
    assert not os.path.exists(tmp)
