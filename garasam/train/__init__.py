"""Training adapters on a frozen SAM: configs, losses, the loop (one CPU to many GPU nodes), checkpoints.

    from garasam.train import load_config, train
    result = train(load_config("configs/tiny_gara.yaml", ["data.train=robustseg:data/synth", "output_dir=runs/t"]))

Names are imported lazily, so `from garasam.train.losses import mask_losses` stays light.
"""

from __future__ import annotations

from garasam.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "garasam.train.config",
    "load_config": "garasam.train.config",
    "TrainResult": "garasam.train.loop",
    "TrainingDiverged": "garasam.train.loop",
    "train": "garasam.train.loop",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
