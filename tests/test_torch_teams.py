"""The widgets' torch work: models loaded on the GUI thread with one torch thread, and each job in a thread of
its own that ends with it (_widgets/torch_teams.py says why: libgomp's teams)."""
import threading

import pytest
import torch

from napari_diffdenoise._widgets import torch_teams


def test_a_model_loads_on_one_torch_thread_and_the_count_comes_back(monkeypatch):
    seen = []
    monkeypatch.setattr(torch_teams, "load_model", lambda name: seen.append(torch.get_num_threads()) or name)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch_teams.load_here("demo") == "demo"
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert seen == [1] and after == 2


def test_a_generator_job_steps_in_one_thread_of_its_own_that_ends_with_it():
    where, caller = [], threading.get_ident()

    def job(n):
        for k in range(n):
            where.append(threading.current_thread())
            yield k
        return "done"

    relay = torch_teams.in_own_thread(job)
    steps = relay(3)
    items = []
    with pytest.raises(StopIteration) as stop:
        while True:
            items.append(next(steps))
    assert items == [0, 1, 2] and stop.value.value == "done"
    assert len(set(where)) == 1 and where[0].ident != caller
    assert not where[0].is_alive()  # its thread went with it (and any OpenMP team it had)


def test_a_generator_job_stopped_early_is_closed_in_its_own_thread():
    closed = []

    def job():
        try:
            yield 1
            yield 2
        finally:
            closed.append(threading.current_thread())

    steps = torch_teams.in_own_thread(job)()
    assert next(steps) == 1
    steps.close()  # napari's quit: the worker stops pulling
    assert len(closed) == 1 and closed[0] is not threading.current_thread() and not closed[0].is_alive()


def test_a_jobs_errors_and_results_come_back_to_the_worker():
    def failing():
        yield 1
        raise ValueError("bad input")

    steps = torch_teams.in_own_thread(failing)()
    assert next(steps) == 1
    with pytest.raises(ValueError, match="bad input"):
        next(steps)
    ran = []
    assert torch_teams.in_own_thread(lambda x: ran.append(threading.current_thread()) or x * 2)(21) == 42
    assert ran[0] is not threading.current_thread() and not ran[0].is_alive()
    with pytest.raises(KeyError):
        torch_teams.in_own_thread(lambda: {}["missing"])()


def test_a_jobs_thread_takes_the_count_it_was_given_whatever_another_thread_holds_meanwhile():
    """A thread takes torch's count at its first torch call as it stands then, and keeps it: a job starting
    while another thread held one thread for a moment (a load on the GUI thread, a busy machine's step) ran
    on one thread to its end."""
    from napari_diffdenoise.core.run.cpu_share import torch_threads

    held, release, seen = threading.Event(), threading.Event(), []

    def other():
        with torch_threads(1):
            held.set()
            release.wait()

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    holder = threading.Thread(target=other)
    holder.start()
    held.wait()
    try:
        torch_teams.in_own_thread(lambda: seen.append(torch.get_num_threads()))()  # as it stands: 1
        torch_teams.in_own_thread(lambda: seen.append(torch.get_num_threads()), 2)()
    finally:
        release.set()
        holder.join()
        torch.set_num_threads(previous)
    assert seen == [1, 2]
