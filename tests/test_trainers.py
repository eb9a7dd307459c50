"""PyTorch trainers fed by ``loader.torch()``: a real Lightning ``Trainer.fit`` and a real Accelerate
loop, in one process and (Accelerate) in two ranks on loopback, each sample exactly once an epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import chute

pytestmark = pytest.mark.frameworks

N = 200


def regression(n: int = N) -> chute.Dataset:
    """``y = x @ w`` with each sample's index beside it, to see what was trained."""
    x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.5], [-2.0], [0.5]], np.float32)).astype(np.float32)
    return chute.from_arrays(x, y, np.arange(n, dtype=np.int64))


def test_lightning_trainer_fits_every_sample_once_an_epoch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    lightning = pytest.importorskip("lightning")
    torch.manual_seed(0)

    class Regression(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 1)
            self.trained: list[list[int]] = []
            self.validated: list[list[int]] = []
            self.losses: list[float] = []

        def training_step(self, batch, number):  # type: ignore[no-untyped-def]
            x, y, ids = batch
            if number == 0:
                self.trained.append([])
            self.trained[-1] += ids.tolist()
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.losses.append(loss.item())
            return loss

        def validation_step(self, batch, number):  # type: ignore[no-untyped-def]
            x, y, ids = batch
            if number == 0:
                self.validated.append([])
            self.validated[-1] += ids.tolist()
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    train = regression().loader(16, shuffle=True, seed=3, workers=2)
    val = regression(50).loader(16, workers=2)
    module = Regression()
    trainer = lightning.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=train.torch(), val_dataloaders=val.torch(whole=True))
    assert len(module.trained) == 3 and train.epoch == 3
    for epoch in module.trained:
        assert sorted(epoch) == list(range(N))  # every sample once an epoch
    assert module.trained[0] != module.trained[1]  # a fresh order each epoch
    again = regression().loader(16, shuffle=True, seed=3)
    expected = [[i for b in range(len(again)) for i in again.batch(b, e)[2].tolist()] for e in range(3)]
    assert module.trained == expected  # the order is the loader's, whatever Lightning does around it
    # whole=True: the sanity check's two batches are a peek; every validation pass is the whole set.
    assert [len(v) for v in module.validated] == [32, 50, 50, 50]
    assert [sorted(v) for v in module.validated[1:]] == [list(range(50))] * 3
    assert module.losses[-1] < 0.01 * module.losses[0]


def test_accelerate_prepares_the_model_and_the_loader_in_one_process() -> None:
    torch = pytest.importorskip("torch")
    accelerate = pytest.importorskip("accelerate")
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    accelerator = accelerate.Accelerator(cpu=True)
    loader = regression().loader(16, shuffle=True, seed=3, workers=2)
    model, optimizer, batches = accelerator.prepare(
        torch.nn.Linear(3, 1),
        torch.optim.SGD(torch.nn.Linear(3, 1).parameters(), lr=0.1),
        DataLoader(loader.torch(), batch_size=None),
    )
    optimizer = accelerator.prepare(torch.optim.SGD(model.parameters(), lr=0.1))
    seen, losses = [], []
    for _ in range(3):
        seen.append([])
        for x, y, ids in batches:
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
            seen[-1] += ids.tolist()
            losses.append(loss.item())
    again = regression().loader(16, shuffle=True, seed=3)
    assert seen == [[i for b in range(len(again)) for i in again.batch(b, e)[2].tolist()] for e in range(3)]
    assert loader.epoch == 3
    assert losses[-1] < 0.01 * losses[0]


ACCELERATE_RANK = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, torch, accelerate
    import chute

    accelerator = accelerate.Accelerator(cpu=True)  # RANK, WORLD_SIZE, MASTER_* from the parent: gloo
    n = 103  # not a multiple of world_size * batch_size
    x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    loader = chute.from_arrays(x, np.arange(n, dtype=np.int64)).loader(8, shuffle=True, seed=0, workers=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.01))
    seen = []
    for epoch in range(2):
        seen.append([])
        steps = 0
        # not prepared: chute already deals each rank its share, on the rank's device
        for features, labels in loader.torch(device=accelerator.device):
            loss = model(features).square().mean()
            optimizer.zero_grad()
            accelerator.backward(loss)  # gradients all-reduced: a rank with a batch more would hang
            optimizer.step()
            seen[-1] += labels.tolist()
            steps += 1
        assert steps == 7, steps  # ceil(52 / 8) on both ranks
    weights = [p.detach().numpy().ravel().tolist() for p in model.parameters()]
    out = {"rank": accelerator.process_index, "size": accelerator.num_processes, "seen": seen, "w": weights}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    loader.close()
    accelerator.wait_for_everyone()
    os._exit(0)  # (gloo's threads can abort the interpreter's exit: see test_distributed)
    """
)


def test_accelerate_ranks_train_on_disjoint_equal_shares(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from test_distributed import free_port

    script = tmp_path / "rank.py"
    script.write_text(ACCELERATE_RANK)
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
        env["MASTER_PORT"] = port
        out = tmp_path / f"rank{rank}.json"
        processes.append((subprocess.Popen([sys.executable, str(script), str(out)], env=env), out))
    for process, _ in processes:
        assert process.wait(timeout=180) == 0
    results = [json.loads(out.read_text()) for _, out in processes]
    assert [(r["rank"], r["size"]) for r in results] == [(0, 2), (1, 2)]
    assert results[0]["w"] == results[1]["w"]  # the ranks trained one model together
    for epoch in range(2):
        shares = [r["seen"][epoch] for r in results]
        assert len(shares[0]) == len(shares[1]) == 52  # 103 dealt 52 + 51, the short share padded
        counts = Counter(shares[0] + shares[1])
        assert set(counts) == set(range(103))  # the union is the whole epoch, nothing lost
        assert sum(counts.values()) - 103 == 1
