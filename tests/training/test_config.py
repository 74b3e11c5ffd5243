import json
import sys

import pytest

from psal.training import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config_file,
)


def test_defaults_are_the_papers():
    cfg = TrainConfig()
    assert cfg.model.kwargs["width"] == 32 and cfg.model.kwargs["attention"] == "contextual"
    assert cfg.data.image_size == 256 and cfg.batch_size == 16
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.5, 0.9)
    assert cfg.loss.gp_weight == 10 and cfg.loss.adv_weight == 0.001
    assert cfg.loss.l1_weight == cfg.loss.coarse_weight == cfg.loss.ae_weight == 1.2
    assert cfg.loss.discount_gamma == 0.99


def test_overrides_convert_types():
    cfg = apply_overrides(
        TrainConfig(),
        [
            "model.width=8",
            "optim.lr=3e-4",
            "optim.betas=0.0,0.99",
            "tensorboard=false",
            "data.hole_size=12",
            "model.attention_options.k=4",
            "model.attention_options.aggregation=patch",
            "--steps=7",
        ],
    )
    kw = cfg.model.kwargs
    assert kw["width"] == 8 and cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.0, 0.99)
    assert cfg.tensorboard is False and cfg.data.hole_size == 12 and cfg.steps == 7
    assert kw["attention_options"] == {"k": 4, "aggregation": "patch"}
    cfg = apply_overrides(cfg, ['model.attention_options={"iters": 2}', "data.hole_size=none"])
    assert cfg.model.kwargs["attention_options"] == {"iters": 2} and cfg.data.hole_size is None
    # the keys of before model.kwargs (aliases) and the new ones, at any depth
    cfg = apply_overrides(cfg, ["model.kwargs.attention_options.k=5", "model.kwargs.width=6"])
    assert cfg.model.kwargs == {"width": 6, "attention": "contextual",
                                "attention_options": {"iters": 2, "k": 5}}  # fmt: skip


def test_bad_overrides_and_keys():
    with pytest.raises(ValueError, match=r"unknown config key 'model.widht'"):
        apply_overrides(TrainConfig(), ["model.widht=8"])
    with pytest.raises(ValueError, match=r"model.critic_width must be an integer"):
        apply_overrides(TrainConfig(), ["model.critic_width=eight"])
    with pytest.raises(ValueError, match=r"section.key=value"):
        apply_overrides(TrainConfig(), ["steps"])
    with pytest.raises(ValueError, match="tensorboard must be a boolean"):
        apply_overrides(TrainConfig(), ["tensorboard=maybe"])
    with pytest.raises(ValueError, match=r"optim.betas must be a list of 2"):
        apply_overrides(TrainConfig(), ["optim.betas=0.5"])
    with pytest.raises(ValueError, match=r"^model must be a table/object, got '3'"):
        apply_overrides(TrainConfig(), ["model=3"])


def test_a_network_option_one_level_too_high_gets_a_hint():
    from psal.training.tasks.upscale.task import UpscaleConfig

    with pytest.raises(ValueError, match=r"'model.width' \(did you mean model.kwargs.width\?\)"):
        apply_overrides(UpscaleConfig(), ["model.width=8"])
    assert apply_overrides(UpscaleConfig(), ["model.kwargs.width=8"]).model.kwargs["width"] == 8


def test_roundtrip_and_files(tmp_path):
    cfg = apply_overrides(TrainConfig(), ["model.width=8", "optim.betas=0.1,0.2"])
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data
    assert config_from_dict(data) == cfg
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"width": 16}, "steps": 5}))
    from_file = config_from_dict(load_config_file(path))
    assert from_file.model.kwargs["width"] == 16 and from_file.steps == 5
    assert from_file.data == TrainConfig().data
    bad = tmp_path / "c.yaml"
    bad.write_text("x: 1")
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        load_config_file(bad)
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config_file(broken)
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "none.json")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib needs Python 3.11")
def test_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('steps = 9\n[model]\nattention = "psal"\n[model.attention_options]\nk = 5\n')
    cfg = config_from_dict(load_config_file(path))
    assert cfg.steps == 9 and cfg.model.kwargs["attention"] == "psal"
    assert cfg.model.kwargs["attention_options"] == {"k": 5}
