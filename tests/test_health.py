"""hmxnb.health: the one line that says a run is not learning (all completions masked, or a ~0 gradient)."""

import pandas as pd

from hmxnb import health


def _log(clipped, grad, mask):
    rows = [{"step": i + 1, "completions/clipped_ratio": c, "grad_norm": g}
            for i, (c, g) in enumerate(zip(clipped, grad))]
    return pd.DataFrame([{**r, **health.step_health(r, mask)} for r in rows])


def test_masked_completions_are_counted_only_when_masking_is_on():
    on, off = _log([1.0, 0.75], [0.0, 0.1], True), _log([1.0, 0.75], [0.0, 0.1], False)
    assert health.summary(on)["masked_share"] == 0.875 and health.summary(off)["masked_share"] == 0.0
    assert health.summary(on)["truncated_share"] == health.summary(off)["truncated_share"] == 0.875
    assert health.summary(on)["zero_grad_steps"] == 1 and health.summary(on)["logged_steps"] == 2


def test_warning_when_most_completions_are_masked():
    line = health.warning(_log([1.0, 1.0, 0.5], [0.0, 0.0, 0.2], True), "human")
    assert line.startswith("training is not learning (human): 83% of completions were masked")


def test_warning_when_the_gradient_is_about_zero_on_most_steps():
    line = health.warning(_log([0.0, 0.0, 0.0], [0.0, 1e-12, 0.3], False))
    assert line.startswith("training is not learning: the gradient was ~0 on 2 of 3 steps")


def test_no_warning_for_a_run_that_learns():
    assert health.warning(_log([1.0, 1.0, 1.0], [0.2, 0.1, 0.3], False)) is None  # truncated but not masked: it learns
    assert health.warning(pd.DataFrame({"step": [1]})) is None  # a log without those columns says nothing


def test_the_notebook_line_is_the_warning_or_the_numbers():
    assert health.line(_log([1.0, 1.0], [0.0, 0.0], True)).startswith("WARNING: training is not learning: 100% of")
    assert health.line(_log([0.5, 0.0], [0.1, 0.2], False)) == (
        "training health: 25% of completions cut at max_completion_length; 0% of completions masked from the loss; "
        "~0 gradient on 0 of 2 steps")
