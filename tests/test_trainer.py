import json
import math

import pytest
import torch
from safetensors.torch import load_file

import genlab
from genlab.data import load_dataset
from genlab.errors import UserError
from genlab.model import GenerativeModel, ModelConfig, Phase
from genlab.train.checkpoint import list_checkpoints
from genlab.train.config import TrainConfig
from genlab.train.monitor import NanGuard, SpikeDetector
from genlab.train.trainer import EpochSampler, Trainer


@pytest.fixture(scope="module")
def ring8():
    return load_dataset("ring8")


def _trainer(data, out, **cfg):
    torch.manual_seed(0)
    model = genlab.create("vae", data_shape=(2,), hidden=32, depth=2, latent_dim=2)
    base = dict(steps=20, batch_size=64, lr=1e-3, warmup=5, ckpt_every=10, log_every=5, eval_batches=2, num_samples=16)
    t = Trainer(model, data, TrainConfig(**{**base, **cfg}), out)
    t.show_progress = False
    return t


def _tensors(path):
    return {f: load_file(str(path / f)) for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


def test_resume_is_bitwise_exact(ring8, tmp_path, monkeypatch):
    straight = _trainer(ring8, tmp_path / "a", steps=20)
    straight.fit()
    half = _trainer(ring8, tmp_path / "b", steps=20)
    step = half.train_step

    def interrupted_at_10():
        if half.step == 10:
            raise KeyboardInterrupt  # Ctrl-C: the trainer checkpoints, then stops
        return step()

    monkeypatch.setattr(half, "train_step", interrupted_at_10)
    with pytest.raises(UserError, match="interrupted at step 10; checkpoint saved"):
        half.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "b/checkpoints")] == ["step_10"]
    resumed = _trainer(ring8, tmp_path / "b", steps=20)
    resumed.fit(resume=True)
    a, b = _tensors(tmp_path / "a/checkpoints/step_20"), _tensors(tmp_path / "b/checkpoints/step_20")
    for f in a:
        assert a[f].keys() == b[f].keys()
        for k in a[f]:
            assert torch.equal(a[f][k], b[f][k]), f"{f}:{k} differs after resume"
    log = [json.loads(x) for x in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20]
    straight_log = [json.loads(x) for x in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log] == [r["loss"] for r in straight_log]


def test_outputs_and_checkpoint_pruning(ring8, tmp_path):
    t = _trainer(ring8, tmp_path, steps=40, ckpt_every=10, keep=2, sample_every=20)
    metrics = t.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_30", "step_40"]
    for f in ("samples.png", "metrics.json", "report.html", "curves.png", "model/config.json", "samples/step_20.png"):
        assert (tmp_path / f).is_file(), f
    assert metrics["steps"] == 40 and math.isfinite(metrics["nll_nats"])
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 40
    loaded = GenerativeModel.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.decoder[0].weight, t.ema.model.decoder[0].weight)


def test_lr_schedule_warmup_then_cosine(ring8, tmp_path):
    t = _trainer(ring8, tmp_path, steps=100, warmup=10, lr=1.0)
    values = []
    for s in (0, 4, 9, 50, 99):
        t.step = s
        values.append(t.lr())
    assert values[0] == pytest.approx(0.1) and values[1] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    assert values[3] == pytest.approx(0.5) and values[4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))


def test_epoch_sampler_covers_data_and_resumes():
    s = EpochSampler(10, 4, seed=1)
    first_epoch = torch.cat([s.next(), s.next()])
    assert len(set(first_epoch.tolist())) == 8
    s.next()
    state = s.state()
    nxt = s.next()
    s2 = EpochSampler(10, 4, seed=1)
    s2.load_state(state)
    assert torch.equal(s2.next(), nxt) and state["epoch"] == 1


class _NaNModel(GenerativeModel):
    """A model whose loss turns NaN from the 3rd call on."""

    def __init__(self):
        super().__init__(ModelConfig())
        self.w = torch.nn.Parameter(torch.ones(2))
        self.calls = 0
        self.name = "nan"

    def loss(self, batch, phase):
        self.calls += 1
        value = (batch["x"] * self.w).pow(2).mean()
        return {"loss": value * (float("nan") if self.calls >= 3 else 1.0)}


def test_nan_guard_skips_then_stops(ring8, tmp_path):
    model = _NaNModel()
    t = Trainer(model, ring8, TrainConfig(steps=50, nan_patience=5, batch_size=8), tmp_path)
    t.show_progress = False
    with pytest.raises(UserError, match="NaN/Inf for 5 steps in a row"):
        t.fit()
    assert t.step == 6 and t.nan_guard.total == 5  # 2 good steps, 4 skipped, the 5th NaN in a row raises
    assert torch.isfinite(model.w).all()


def test_nan_guard_resets_on_finite():
    g = NanGuard(3)
    assert not g.check(float("nan"), 1) and not g.check(float("inf"), 2)
    assert g.check(1.0, 3) and g.in_a_row == 0 and g.total == 2


def test_spike_detector_uses_window_maximum():
    d = SpikeDetector(window=3, factor=2.0)
    flags = [d.update(v) for v in [1.0, 3.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 2.5]]
    # 5.0 < 2 x max(3, 1, 1) = 6 is no spike; 2.5 > 2 x max(1, 1, 1) is one.
    assert flags == [False] * 8 + [True] and d.spikes == 1
    d2 = SpikeDetector(window=3, factor=2.0)
    d2.load_state(d.state())
    assert d2.update(9.0) == d.update(9.0)


def test_multi_phase_models_get_one_optimizer_each(ring8, tmp_path):
    class TwoPhase(GenerativeModel):
        def __init__(self):
            super().__init__(ModelConfig())
            self.a = torch.nn.Parameter(torch.zeros(2))
            self.b = torch.nn.Parameter(torch.zeros(2))
            self.name = "two"

        def phases(self):
            return [Phase("critic", [self.a], steps=3), Phase("generator", [self.b])]

        def loss(self, batch, phase):
            p = self.a if phase == "critic" else self.b
            return {"loss": (batch["x"].mean(0) - p).pow(2).sum()}

    t = Trainer(TwoPhase(), ring8, TrainConfig(steps=4, warmup=0, batch_size=16, lr=0.1), tmp_path)
    t.show_progress = False
    t.fit()
    opt = t.optimizers
    assert opt["critic"].state[opt["critic"].param_groups[0]["params"][0]]["step"].item() == 12
    assert opt["generator"].state[opt["generator"].param_groups[0]["params"][0]]["step"].item() == 4
