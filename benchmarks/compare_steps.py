"""Losses and every parameter gradient of a few training steps, to compare two checkouts exactly.

Run it once per checkout (the package is imported from the current directory's checkout, e.g.
``PYTHONPATH=. python /path/to/compare_steps.py --out old.pt`` in the old one), then compare:
``python benchmarks/compare_steps.py --compare old.pt new.pt`` prints, per setting, how many tensors
are bit for bit equal (``torch.equal``) and the largest difference otherwise. The settings run on a
small synthetic store (the configs' batch size, history length and negatives).
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import torch

SETTINGS = ("ml-1m/sasrec", "ml-1m/hstu", "ml-1m/hstu-large")


def record(out: str, steps: int, bindings: tuple[str, ...]) -> None:
    import gin

    from generative_recommenders.bench import measure
    from generative_recommenders.training.inputs import encoder_inputs

    measure.tune_allocator()
    results = {}
    with tempfile.TemporaryDirectory() as data_dir:
        measure.write_synthetic_store(pathlib.Path(data_dir), "ml-100k", 400, 1500, 60)
        for setting in SETTINGS:
            config = measure._configure(setting, "ml-100k", False, bindings)
            built, model, optimizer = measure._build(
                config, data_dir, "ml-100k", torch.device("cpu")
            )
            tensors = []
            for batch in measure._first_batches(built.data.train.loader, steps):
                inputs = encoder_inputs(batch, write_target_id=True)
                optimizer.zero_grad(set_to_none=True)
                total, _, _ = model(inputs)
                total.backward()
                tensors.append(total.detach().clone())
                tensors += [p.grad.clone() for p in model.parameters() if p.grad is not None]
                optimizer.step()
            results[setting] = tensors
            gin.clear_config()
            print(setting, "loss per step:", [float(t) for t in tensors if t.dim() == 0])
    torch.save(results, out)


def compare(old_path: str, new_path: str) -> None:
    old, new = torch.load(old_path, weights_only=True), torch.load(new_path, weights_only=True)
    for setting in SETTINGS:
        pairs = list(zip(old[setting], new[setting], strict=True))
        equal = sum(torch.equal(a, b) for a, b in pairs)
        worst = max(float((a - b).abs().max()) for a, b in pairs)
        print(f"{setting}: {equal}/{len(pairs)} tensors bit-identical, max |diff| {worst:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--binding", action="append", default=[])
    parser.add_argument("--compare", nargs=2)
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        record(args.out, args.steps, tuple(args.binding))


if __name__ == "__main__":
    main()
