"""A run folder -> (its config, its store, the encoder with a checkpoint's weights), eval mode.

The model is rebuilt from the run's operative ``config.gin`` (``train_fn`` and the architecture
bindings) exactly as the trainer built it, then the checkpoint's ``encoder.*`` weights are loaded
(``weights_only=True``). Relative folders in ``run.json`` were relative to the training command's
working directory; they are tried from the current directory, then from the folder above the
run's experiment directory (``<run_dir>/../../..``), where ``exps/`` and ``ckpts/`` usually sit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from generative_recommenders.config.build import build_config_encoder
from generative_recommenders.config.registry import parse_gin
from generative_recommenders.config.train import TrainConfig, train_fn
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.training import checkpoint as ckpt

_LOG = logging.getLogger(__name__)
ENCODER_PREFIX = "encoder."


@dataclass
class LoadedRun:
    """What a recommender needs from a run folder."""

    run_dir: Path
    record: dict
    config: TrainConfig
    store: SequenceStore
    encoder: SequentialEncoder
    checkpoint_path: Path


def read_run_record(run_dir: Path) -> dict:
    """``run.json`` of a run folder; UserInputError when the folder is not a run."""
    if not run_dir.is_dir():
        raise UserInputError(f"--run_dir={run_dir}: no such folder")
    record_file = run_dir / "run.json"
    if not record_file.is_file() or not (run_dir / "config.gin").is_file():
        raise UserInputError(
            f"--run_dir={run_dir}: no run.json/config.gin (expected a run folder written by "
            "main.py, exps/<dataset>-l<len>/<run name>/)"
        )
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise UserInputError(f"{record_file}: not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise UserInputError(f"{record_file}: expected a JSON object")
    return record


def _resolve(path_text: str, run_dir: Path) -> Path:
    path = Path(path_text)
    if path.is_absolute() or path.exists():
        return path
    beside_exps = (
        run_dir.resolve().parents[2] / path if len(run_dir.resolve().parents) > 2 else path
    )
    return beside_exps if beside_exps.exists() else path


def checkpoint_folder(run_dir: Path, record: dict) -> Path:
    if "checkpoint_dir" not in record:
        raise UserInputError(f"{run_dir / 'run.json'}: no 'checkpoint_dir'; pass --checkpoint PATH")
    return _resolve(str(record["checkpoint_dir"]), run_dir)


def resolve_checkpoint(run_dir: Path, record: dict, checkpoint: str) -> Path:
    """``"best"`` (best.pt, else last.pt with a notice), ``"latest"`` (last.pt) or a file path."""
    if checkpoint not in ("best", "latest"):
        path = Path(checkpoint)
        if not path.is_file():
            raise UserInputError(f"--checkpoint={checkpoint}: no such checkpoint file")
        return path
    folder = checkpoint_folder(run_dir, record)
    last = folder / "last.pt"
    if not last.is_file():
        newest = ckpt.latest_checkpoint(folder)
        last = newest if newest is not None else last
    if checkpoint == "best":
        best = folder / "best.pt"
        if best.is_file():
            return best
        if last.is_file():
            _LOG.info(
                "no best.pt in %s (a test-protocol run keeps none): using %s", folder, last.name
            )
            return last
    if not last.is_file():
        raise UserInputError(f"--checkpoint={checkpoint}: no checkpoint in {folder}/")
    return last


def load_config(run_dir: Path) -> TrainConfig:
    """Parse the run's operative config.gin into its TrainConfig (gin is left configured).

    Bindings of configurables an older version had (``get_sequential_encoder.*``,
    ``get_similarity_function.*``) are skipped: the same settings now live on the components.
    """
    parse_gin([str(run_dir / "config.gin")], skip_unknown=True)
    return train_fn()


def build_run_encoder(config: TrainConfig, store: SequenceStore) -> SequentialEncoder:
    """The encoder of ``config`` sized for ``store`` (architecture from the parsed gin)."""
    return build_config_encoder(config, store.max_item_id)


def encoder_state(checkpoint_state: dict, source: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights out of a trainer checkpoint (keys without the ``encoder.`` prefix)."""
    model = checkpoint_state.get("model") if isinstance(checkpoint_state, dict) else None
    if not isinstance(model, dict):
        raise UserInputError(f"{source}: no 'model' weights (not a trainer checkpoint)")
    state = {k[len(ENCODER_PREFIX) :]: v for k, v in model.items() if k.startswith(ENCODER_PREFIX)}
    if not state:
        raise UserInputError(f"{source}: no 'encoder.*' weights in the checkpoint's model")
    return state


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> LoadedRun:
    """Rebuild a run's encoder with its checkpoint's weights, in eval mode on ``device``."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    checkpoint_path = resolve_checkpoint(run_dir, record, checkpoint)
    config = load_config(run_dir)
    if data_dir is None:
        data_dir = _resolve(str(record.get("data_dir", "tmp/")), run_dir)
    store = SequenceStore.open(data_dir, config.dataset_name)
    encoder = build_run_encoder(config, store)
    state = encoder_state(ckpt.load_checkpoint(checkpoint_path), checkpoint_path)
    ckpt.check_compatible(encoder.state_dict(), state, checkpoint_path)
    encoder.load_state_dict(state)
    encoder = encoder.float().to(device).eval()
    _LOG.info("loaded %s (%s) from %s", config.main_module, run_dir.name, checkpoint_path)
    return LoadedRun(run_dir, record, config, store, encoder, checkpoint_path)
