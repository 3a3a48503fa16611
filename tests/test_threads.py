"""The thread count the command line chooses: the environment wins, else the idle cores."""

from __future__ import annotations

import pytest

from fpscf.threads import choose_threads


@pytest.fixture(autouse=True)
def _no_thread_variables(monkeypatch):
    monkeypatch.delenv("FPSCF_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_idle_cores_are_used_and_busy_ones_left_alone():
    assert choose_threads(cores=2, load=0.1).threads == 2
    assert choose_threads(cores=2, load=1.2).threads == 1  # one other busy process
    assert choose_threads(cores=2, load=7.0).threads == 1  # never below one
    assert choose_threads(cores=16, load=3.6).threads == 12


def test_environment_wins_and_is_named(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(cores=2, load=5.0).threads == 3
    monkeypatch.setenv("FPSCF_NUM_THREADS", "1")
    choice = choose_threads(cores=2, load=0.0)
    assert (choice.threads, choice.source) == (1, "FPSCF_NUM_THREADS")
    assert "FPSCF_NUM_THREADS=1" in choice.describe()


def test_a_value_that_is_not_a_thread_count_is_ignored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "four")
    choice = choose_threads(cores=2, load=0.0)
    assert (choice.threads, choice.source) == (2, "load")
    assert "2 cores, load 0.0" in choice.describe()

