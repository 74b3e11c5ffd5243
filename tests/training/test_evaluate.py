"""Task-generic evaluation helpers, the inpaint task's evaluation and its renamed keyword."""

import importlib
import math
import warnings

import pytest
import torch
from train_helpers import tiny_overrides

import psal.training
from psal.training import Trainer, apply_overrides, format_table, mean_metrics
from psal.training.tasks.inpaint import InpaintConfig
from psal.training.tasks.inpaint import evaluate as inpaint_evaluate


def test_mean_metrics_averages_finite_values_in_order():
    data = [{"x": torch.tensor(float(i))} for i in range(5)]

    def batch_metrics(batch):
        x = batch["x"]
        # "inf_at_0" is infinite for image 0: averaged over the other images only
        return {"b": x, "inf_at_0": torch.where(x == 0, math.inf, x), "nan": x * math.nan}

    out = mean_metrics(batch_metrics, data, batch_size=2, order=("nan", "inf_at_0"))
    assert list(out) == ["nan", "inf_at_0", "b", "images"]
    assert out["b"] == 2.0 and out["inf_at_0"] == 2.5 and math.isnan(out["nan"])
    assert out["images"] == 5
    limited = mean_metrics(batch_metrics, data, batch_size=4, limit=3)
    assert limited["b"] == 1.0 and limited["images"] == 3


def test_format_table_column_order():
    rows = {"a": {"psnr": 30.123, "l1": 0.01234, "images": 2}, "bb": {"l1": 0.5, "z": "-"}}
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["psnr", "l1", "images", "z"]  # first-seen order
    assert lines[2].split() == ["a", "30.12", "0.0123", "2"]
    assert lines[3].split() == ["bb", "0.5000", "-"]
    assert format_table(rows, columns=("l1",)).splitlines()[0].split() == [
        "l1",
        "images",
        "psnr",
        "z",
    ]


def test_inpaint_names_moved_and_still_importable():
    assert psal.training.evaluate is inpaint_evaluate.evaluate
    assert psal.training.METRICS is inpaint_evaluate.METRICS
    module = importlib.import_module("psal.training.evaluate")  # the generic module
    for name in ("evaluate", "METRICS", "image_metrics"):
        with pytest.warns(DeprecationWarning, match=rf"evaluate\.{name} moved to psal\.training"):
            assert getattr(module, name) is getattr(inpaint_evaluate, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        module.nothing  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert module.format_table is format_table and module.mean_metrics is mean_metrics


def test_generator_step_return_flow_is_the_deprecated_return_field(photo_folder, tmp_path):
    extra = {"model.attention": "psal", "steps": 1}
    cfg = apply_overrides(InpaintConfig(), tiny_overrides(photo_folder, tmp_path, **extra))
    new = Trainer(cfg)  # seeded: both trainers start alike and draw the same batches
    logs, out = new.task.generator_step(new.stream.next(), return_field=True)
    old = Trainer(cfg)
    with pytest.warns(DeprecationWarning, match=r"return_flow=\.\.\.\) is deprecated"):
        old_logs, old_out = old.task.generator_step(old.stream.next(), return_flow=True)
    assert logs == old_logs
    assert out.field is not None and torch.equal(out.field, old_out.field)
    for a, b in zip(new.task.generator.parameters(), old.task.generator.parameters()):
        assert torch.equal(a, b)
    # the image log draws the field as a fourth panel
    images = {}

    class Writer:
        def add_image(self, tag, image, step):
            images[tag] = image

    batch = new.stream.next()
    _, (out, batch) = new.task.train_step(lambda: batch, images=True)
    assert out.field is not None
    new.task.log_images(Writer(), 1, (out, batch))
    (image,) = images.values()
    assert image.shape == (3, 2 * 32, 5 * 32)  # input, coarse, completed, field, original
