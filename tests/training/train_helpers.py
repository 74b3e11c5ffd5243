"""Helpers shared by the training tests."""


def tiny_overrides(data, out, **extra):
    """Config overrides for a tiny, fast run."""
    base = {
        "data.path": data,
        "out": out,
        "data.image_size": 32,
        "data.hole_size": 8,
        "data.max_delta": 2,
        "data.num_workers": 0,
        "data.val_fraction": 0.25,
        "batch_size": 2,
        "steps": 4,
        "model.width": 4,
        "model.critic_width": 4,
        "model.attention": "none",
        "optim.n_critic": 1,
        "device": "cpu",
        "tensorboard": False,
        "progress": False,
        "log_every": 1,
        "val_every": 0,
        "save_every": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
