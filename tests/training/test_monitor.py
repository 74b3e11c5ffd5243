import pytest

from psal.training.monitor import Monitor

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _logged_steps(folder):
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")]


def _run(out, first, last):
    """A run from step ``first`` (0: a new run; else resumed there) that logs to ``last``."""
    mon = Monitor(out, {"steps": 10}, enabled=True, tensorboard=True, progress=False)
    mon.open_bar(first, 10)
    for step in range(first + 1, last + 1):
        if step == first + 1:
            mon.start()
        mon.scalars({"loss": float(step)}, step, ())
    mon.close()


def test_resume_purges_the_steps_logged_after_the_checkpoint(tmp_path):
    _run(tmp_path, 0, 6)  # stopped at step 6, last checkpoint at step 4
    _run(tmp_path, 4, 8)  # resumed from step 4: steps 5 and 6 logged again
    assert _logged_steps(tmp_path / "tensorboard") == list(range(1, 9))
