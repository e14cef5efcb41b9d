"""The trainer: exact resume, interrupts, NaN guard, spikes, phases, schedule, outputs."""

import json
import math
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

import genlab
import toy_families  # noqa: F401  (registers toy-gan and toy-encoder)
from genlab.data import Dataset, Splits, load_dataset
from genlab.errors import UserError
from genlab.model import Context, Model, ModelConfig, Phase, register_model
from genlab.train import precision
from genlab.train.checkpoint import list_checkpoints
from genlab.train.config import TrainConfig
from genlab.train.monitor import NanGuard, SpikeDetector
from genlab.train.run import describe, start_run
from genlab.train.schedule import Schedule
from genlab.train.trainer import EpochSampler, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
BASE = dict(steps=20, batch_size=64, lr=1e-3, warmup=5, ckpt_every=10, log_every=5, eval_examples=64, num_samples=16)


@pytest.fixture(scope="module")
def ring8():
    return load_dataset("ring8")


def _trainer(data, out, name="vae", **cfg):
    torch.manual_seed(0)
    small = dict(hidden=32, depth=2, latent_dim=2) if name == "vae" else {}
    t = Trainer(genlab.create(name, data=data, **small), data, TrainConfig(**{**BASE, **cfg}), out)
    t.show_progress = False
    return t


def _tensors(path):
    return {f: load_file(str(path / f)) for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


def _assert_same_checkpoint(a, b):
    ta, tb = _tensors(a), _tensors(b)
    for f in ta:
        assert ta[f].keys() == tb[f].keys()
        for k in ta[f]:
            assert torch.equal(ta[f][k], tb[f][k]), f"{f}:{k} differs"


def _log(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


class SignalAt:
    """Wrap a model's loss to send this process a signal at its k-th call (inside a step)."""

    def __init__(self, model, call, signals=(signal.SIGINT,)):
        self.model, self.call, self.signals, self.calls = model, call, signals, 0
        self.loss = model.loss
        model.loss = self

    def __call__(self, batch, phase, ctx):
        self.calls += 1
        if self.calls == self.call:
            for s in self.signals:
                os.kill(os.getpid(), s)
        return self.loss(batch, phase, ctx)


def test_ctrl_c_inside_a_step_saves_that_step_complete_and_resume_is_exact(ring8, tmp_path):
    straight = _trainer(ring8, tmp_path / "a")
    straight.fit()
    half = _trainer(ring8, tmp_path / "b")
    SignalAt(half.model, call=12)  # inside step 12, after the checkpoint of step 10
    with pytest.raises(UserError, match="interrupted at step 12; checkpoint saved"):
        half.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "b/checkpoints")] == ["step_10", "step_12"]
    a10 = _tensors(tmp_path / "a/checkpoints/step_10")
    b10 = _tensors(tmp_path / "b/checkpoints/step_10")
    assert all(torch.equal(a10[f][k], b10[f][k]) for f in a10 for k in a10[f])  # the good step_10 is untouched
    resumed = _trainer(ring8, tmp_path / "b")
    resumed.fit(resume=True)
    _assert_same_checkpoint(tmp_path / "a/checkpoints/step_20", tmp_path / "b/checkpoints/step_20")
    assert [r["step"] for r in _log(tmp_path / "b")] == [5, 10, 15, 20]
    assert [r["loss"] for r in _log(tmp_path / "b")] == [r["loss"] for r in _log(tmp_path / "a")]


def test_sigterm_saves_too_and_a_second_ctrl_c_saves_nothing(ring8, tmp_path):
    t = _trainer(ring8, tmp_path / "t")
    SignalAt(t.model, call=3, signals=(signal.SIGTERM,))
    with pytest.raises(UserError, match="interrupted at step 3"):
        t.fit()
    t2 = _trainer(ring8, tmp_path / "k")
    SignalAt(t2.model, call=13, signals=(signal.SIGINT, signal.SIGINT))
    with pytest.raises(UserError, match="interrupted twice inside step 13: that step is not saved; the last checkpoint is step_10"):
        t2.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "k/checkpoints")] == ["step_10"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_leftovers_of_a_killed_save_are_cleaned_on_the_next_start(ring8, tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / ".step_7.tmp-abc").mkdir(parents=True)
    (ckpt / ".step_7.tmp-abc" / "model.safetensors").write_bytes(b"half")
    t = _trainer(ring8, tmp_path, steps=2)
    t.fit()
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_2"]


@register_model("test-nan")
class _NaNModel(Model):
    """Loss NaN (``kind="loss"``) or finite with NaN gradients (``kind="grad"``) from the 3rd call."""

    def __init__(self, kind="loss"):  # noqa: D107
        super().__init__(ModelConfig())
        self.w = torch.nn.Parameter(torch.ones(2))
        self.calls, self.kind = 0, kind

    def loss(self, batch, phase, ctx=Context()):
        self.calls += 1
        value = (batch["x"] * self.w).pow(2).mean()
        if self.calls >= 3 and self.kind == "loss":
            value = value * float("nan")
        if self.calls >= 3 and self.kind == "grad":
            value = value + torch.sqrt(self.w - self.w.detach()).sum()  # value + 0, d/dw = inf
        return {"loss": value}


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_nan_guard_skips_then_stops(ring8, tmp_path, kind):
    model = _NaNModel(kind)
    t = Trainer(model, ring8, TrainConfig(steps=50, nan_patience=5, batch_size=8), tmp_path)
    t.show_progress = False
    with pytest.raises(UserError, match="NaN/Inf for 5 steps in a row"):
        t.fit()
    assert t.step == 6 and t.nan_guard.total == 5  # 2 good steps, 4 skipped, the 5th NaN in a row raises
    assert torch.isfinite(model.w).all()
    assert all(math.isfinite(v) for v in t.spikes.history)  # skipped losses never reach the spike detector


def test_nan_guard_resets_on_finite():
    g = NanGuard(3)
    assert not g.check(False, 1) and not g.check(False, 2)
    assert g.check(True, 3) and g.in_a_row == 0 and g.total == 2


def test_spike_detector_uses_window_maximum():
    d = SpikeDetector(window=3, factor=2.0)
    flags = [d.update(v) for v in [1.0, 3.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 2.5]]
    # 5.0 < 2 x max(3, 1, 1) = 6 is no spike; 2.5 > 2 x max(1, 1, 1) is one.
    assert flags == [False] * 8 + [True] and d.spikes == 1
    d2 = SpikeDetector(window=3, factor=2.0)
    d2.load_state(d.state())
    assert d2.update(9.0) == d.update(9.0)
    assert not d.update(float("nan")) and all(math.isfinite(v) for v in d.history)


@register_model("test-spiky")
class _SpikyModel(Model):
    """Loss 1 with a NaN at call 8 and a 10x spike at call 12."""

    def __init__(self, config=None):
        super().__init__(ModelConfig())
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.calls = 0

    def loss(self, batch, phase, ctx=Context()):
        self.calls += 1
        scale = float("nan") if self.calls == 8 else 10.0 if self.calls == 12 else 1.0
        return {"loss": (1 + 0 * self.w) * scale}


def test_a_skipped_nan_does_not_blind_the_spike_detector(ring8, tmp_path):
    t = Trainer(_SpikyModel(), ring8, TrainConfig(steps=14, batch_size=8, spike_window=5, log_every=100), tmp_path)
    t.show_progress = False
    metrics = t.fit()
    assert metrics["loss_spikes"] == 1 and metrics["nan_skipped"] == 1
    spikes = [r["step"] for r in _log(tmp_path) if r["spike"]]
    assert spikes == [12]


def test_outputs_and_checkpoint_pruning(ring8, tmp_path):
    t = _trainer(ring8, tmp_path, steps=40, ckpt_every=10, keep=2, sample_every=20)
    metrics = t.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_30", "step_40"]
    for f in ("samples.png", "metrics.json", "report.html", "curves.png", "model/config.json", "samples/step_20.png"):
        assert (tmp_path / f).is_file(), f
    assert metrics["steps"] == 40 and metrics["stopped_by"] == "steps" and math.isfinite(metrics["nll_nats"])
    assert json.loads((tmp_path / "metrics.json").read_text())["steps_target"] == 40
    loaded = Model.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.decoder[0].weight, t.ema.model.decoder[0].weight)


def test_eval_is_bounded_and_counted(tmp_path):
    data = load_dataset("ring8")
    t = _trainer(data, tmp_path, steps=1, eval_examples=0)
    assert t.cfg.eval_examples == 0 and TrainConfig().eval_examples == 512
    t2 = _trainer(data, tmp_path / "b", steps=1, eval_examples=100)
    assert t2.fit()["test_examples"] == 100 and t.fit()["test_examples"] == len(data.test)


def test_time_budget_stop_is_reported(ring8, tmp_path):
    t = _trainer(ring8, tmp_path, steps=10**6, time_budget=0.3, ckpt_every=10**6)
    metrics = t.fit()
    assert metrics["stopped_by"] == "time_budget" and 0 < metrics["steps"] < metrics["steps_target"] == 10**6
    assert f"ended training at step {metrics['steps']} of 1000000" in (tmp_path / "report.html").read_text()


def test_logged_lr_is_the_lr_used(ring8, tmp_path):
    t = _trainer(ring8, tmp_path, steps=10, warmup=4, log_every=1, lr=1.0)
    used = []
    step = t.optimizers["main"].step

    def record(*a, **k):
        used.append(t.optimizers["main"].param_groups[0]["lr"])
        return step(*a, **k)

    t.optimizers["main"].step = record
    t.fit()
    logged = [r["lr"] for r in _log(tmp_path)]
    assert logged == pytest.approx(used) and logged[0] == pytest.approx(0.25)


def test_lr_schedule_warmup_then_cosine():
    s = Schedule(steps=100, warmup=10)
    assert s(0, 0) == pytest.approx(0.1) and s(4, 0) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.04)))
    assert s(50, 0) == pytest.approx(0.5) and s(99, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert Schedule(steps=100, time_budget=10)(10, 5.0) == pytest.approx(0.5)  # time decides when further


def test_extending_a_run_ramps_without_a_jump(ring8, tmp_path):
    first = _trainer(ring8, tmp_path, steps=20, warmup=5, log_every=1)
    first.fit()
    more = _trainer(ring8, tmp_path, steps=40, warmup=5, log_every=1)
    more.fit(resume=True)
    lr = [r["lr"] / 1e-3 for r in _log(tmp_path)]
    assert len(lr) == 40 and lr[19] < 0.01  # the first plan ended near 0
    assert max(abs(a - b) for a, b in zip(lr[19:], lr[20:])) < 0.15  # no jump to lr / 2 at the extension
    planned = Schedule(steps=40, warmup=5)
    assert lr[25:] == pytest.approx([planned(s, 0) for s in range(25, 40)])  # then the new plan's cosine
    assert lr[-1] < 0.01
    unchanged = _trainer(ring8, tmp_path / "u", steps=20, warmup=5)
    unchanged.fit()
    again = _trainer(ring8, tmp_path / "u", steps=20, warmup=5)
    again.fit(resume=True)
    assert again.schedule.restart_step is None  # resuming the same plan changes nothing


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


def test_phases_do_not_leak_gradients_through_a_shared_graph(ring8, tmp_path):
    torch.manual_seed(0)
    model = genlab.create("toy-gan", data=ring8)
    seen = {}

    def critic_loss(real, z, _orig=model.critic_loss):
        seen["inputs"] = (real.detach().clone(), z.detach().clone())
        return _orig(real, z)

    model.critic_loss = critic_loss
    t = Trainer(model, ring8, TrainConfig(steps=3, batch_size=32, grad_clip=0, warmup=0), tmp_path)
    t.show_progress = False
    opt = t.optimizers["critic"]
    step, checked = opt.step, []

    def check_then_step(*a, **k):
        real, z = seen["inputs"]
        params = list(model.critic.parameters())
        with torch.enable_grad():
            expected = torch.autograd.grad(toy_families.ToyGAN.critic_loss(model, real, z), params)
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)  # its own gradient, nothing leaked
        checked.append(True)
        return step(*a, **k)

    opt.step = check_then_step
    t.fit()
    assert len(checked) == 6  # 3 rounds x n_critic 2
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_each_phase_has_its_optimizer_settings_and_hooks(ring8, tmp_path):
    torch.manual_seed(0)
    model = genlab.create("toy-gan", data=ring8, clip=0.05)
    cfg = TrainConfig(steps=4, warmup=0, batch_size=16, lr=0.1, log_every=1,
                      phases={"generator": {"optimizer": "sgd", "lr": 0.01}})
    t = Trainer(model, ring8, cfg, tmp_path)
    t.show_progress = False
    t.fit()
    opt = t.optimizers
    assert isinstance(opt["critic"], torch.optim.AdamW) and isinstance(opt["generator"], torch.optim.SGD)
    assert opt["critic"].param_groups[0]["betas"] == (0.5, 0.9)  # the phase's own betas
    assert opt["critic"].state[opt["critic"].param_groups[0]["params"][0]]["step"].item() == 8  # n_critic 2 x 4
    assert t.phases[1].lr == 0.01 and t.phases[0].lr == 0.1
    assert all(p.abs().max() <= 0.05 for p in model.critic.parameters())  # after_update clipped the critic
    assert t.ema.model.critic[0].weight.equal(model.critic[0].weight)  # the EMA tracks the generator only
    assert not t.ema.model.generator.weight.equal(model.generator.weight)
    record = _log(tmp_path)[0]
    assert {"critic/loss", "critic/lr", "generator/loss", "generator/lr"} <= set(record)
    assert record["generator/lr"] == pytest.approx(0.01)
    with pytest.raises(UserError, match="no phase called 'gen'.*its phases: critic, generator"):
        Trainer(model, ring8, TrainConfig(phases={"gen": {"lr": 1.0}}), tmp_path / "x")
    with pytest.raises(UserError, match="unknown phase option critic.colour"):
        Trainer(model, ring8, TrainConfig(phases={"critic": {"colour": 1}}), tmp_path / "x")
    with pytest.raises(UserError, match="optimizer='lion'"):
        Trainer(model, ring8, TrainConfig(phases={"critic": {"optimizer": "lion"}}), tmp_path / "x")


def test_weight_decay_groups_and_layer_lr_scales(ring8):
    from genlab.train.optim import make_optimizer, resolve_phases

    model = genlab.create("toy-encoder", data=ring8)
    model.phases = lambda: [Phase("main", list(model.parameters()), weight_decay=0.05,
                                  param_lr_scale=lambda n: 0.5 if n.startswith("body") else 1.0)]
    (phase,) = resolve_phases(model, TrainConfig(lr=1.0))
    opt = make_optimizer(model, phase)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {(g["weight_decay"], g["lr_scale"]): sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups}
    assert groups == {(0.05, 0.5): ["body.0.weight"], (0.0, 0.5): ["body.0.bias"],
                      (0.0, 1.0): ["head.bias", "head.weight"]}  # head.weight is exempt by name


def test_a_representation_family_trains_without_sampling(ring8, tmp_path):
    straight = _trainer(ring8, tmp_path / "a", "toy-encoder", steps=30, lr=5e-2, ckpt_every=15)
    model = straight.model
    assert model.capabilities() == ["encode"] and not model.can("sample")
    metrics = straight.fit()
    assert not (tmp_path / "a/samples.png").exists()
    assert metrics["test_accuracy"] > 0.9 and "test_loss" in metrics
    assert torch.allclose(model.shift, ring8.train.x.mean(0), atol=0.3)  # init_from_data ran ...
    assert torch.equal(straight.ema.model.shift, model.shift)  # ... before the EMA copy
    # The augmentation's random state is part of exact resume.
    resumed = _trainer(ring8, tmp_path / "c", "toy-encoder", steps=30, lr=5e-2, ckpt_every=15)
    SignalAt(resumed.model, call=15)
    with pytest.raises(UserError, match="interrupted at step 15"):
        resumed.fit()
    again = _trainer(ring8, tmp_path / "c", "toy-encoder", steps=30, lr=5e-2, ckpt_every=15)
    again.fit(resume=True)
    _assert_same_checkpoint(tmp_path / "a/checkpoints/step_30", tmp_path / "c/checkpoints/step_30")


def test_settings_fail_before_any_file(tmp_path, ring8):
    with pytest.raises(UserError, match="fp16=true needs CUDA"):
        Trainer(genlab.create("vae", data=ring8), ring8, TrainConfig(fp16=True, device="cpu"), tmp_path / "x")
    with pytest.raises(UserError, match="choose one precision"):
        TrainConfig(bf16=True, fp16=True).validate()
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_chooses_by_the_hardware_and_the_run_keeps_the_choice(native, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    monkeypatch.setattr("genlab.train.run.native_bf16", lambda device: native)
    trainer = start_run("edm", "moons", tmp_path / "r", {"bf16": "auto", "hidden": 16, "depth": 1, "device": "cpu"})
    assert trainer.cfg.bf16 is native
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["bf16"] is native  # resume trains alike
    assert "warning" not in describe(trainer)
    forced = start_run("edm", "moons", tmp_path / "f", {"bf16": "true", "hidden": 16, "depth": 1, "device": "cpu"})
    assert forced.cfg.bf16 is True
    assert ("no native bf16" in describe(forced)) is not native
    with pytest.raises(UserError, match="bf16='maybe'"):
        start_run("edm", "moons", tmp_path / "m", {"bf16": "maybe"})
    with pytest.raises(UserError, match="bf16=auto and fp16=true"):
        TrainConfig(bf16="auto", fp16=True).validate()


def test_native_bf16_answers_for_this_machine():
    assert isinstance(precision.native_bf16(torch.device("cpu")), bool)
    assert precision.resolve_bf16(False, torch.device("cpu")) is False
    assert precision.resolve_bf16(True, torch.device("cpu")) is True


@pytest.mark.parametrize("name", ["vae", "ddpm", "edm", "flow", "toy-gan", "toy-encoder", "vit", "resnet", "mae", "wgan-gp",
                                  "r3gan", "glow", "nsf"])
def test_bf16_losses_reduce_in_float32_and_train(name, tmp_path):
    data = load_dataset("digits") if name in ("vae", "ddpm", "vit", "resnet", "mae", "r3gan", "glow") else load_dataset("moons")
    vit = dict(patch_size=2, embed_dim=16, depth=1, num_heads=2)
    small = {"vae": dict(channels=8, latent_dim=4), "ddpm": dict(channels=8, channel_mult=(1,), num_res_blocks=1, sample_steps=4,
                                                                attn_levels=()),
             "edm": dict(hidden=16, depth=1), "flow": dict(hidden=16, depth=1), "vit": dict(vit, mixup=0.2),
             "resnet": dict(widths=(8,), depths=(1,)),
             "mae": dict(vit, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2),
             "wgan-gp": dict(hidden=16), "r3gan": dict(channels=4, latent_dim=8),
             "glow": dict(transforms=2, channels=8), "nsf": dict(transforms=2, hidden=16)}.get(name, {})
    torch.manual_seed(0)
    model = genlab.create(name, data=data, **small)
    batch = data.train.batch(torch.arange(16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for phase in model.phases():
            out = model.loss(batch, phase.name, Context())
            assert out["loss"].dtype == torch.float32, (name, phase.name)
    t = Trainer(model, data, TrainConfig(steps=3, batch_size=16, bf16=True, eval_examples=16, num_samples=4), tmp_path)
    t.show_progress = False
    assert math.isfinite(t.fit()["steps"])


def test_dataset_extra_fields_reach_the_batch():
    d = Dataset("p", torch.zeros(4, 2), torch.arange(4), ["a", "b", "c", "d"], extra={"tokens": torch.arange(8).view(4, 2)})
    b = d.subset(torch.tensor([3, 1])).batch(torch.tensor([0]))
    assert set(b) == {"x", "y", "tokens"} and b["tokens"].tolist() == [[6, 7]]
    with pytest.raises(UserError, match="shadow"):
        Dataset("p", torch.zeros(4, 2), extra={"y": torch.zeros(4)})
    Splits(d, d)


def test_a_checkpoint_from_before_this_trainer_state_resumes(ring8, tmp_path):
    _trainer(ring8, tmp_path, steps=10).fit()
    state_file = tmp_path / "checkpoints/step_10/trainer.json"
    state = json.loads(state_file.read_text())
    for key in ("schedule", "last_mult", "noise", "overflows", "scalers"):
        del state[key]
    for group in state["optimizers"]["main"]["param_groups"]:
        del group["lr_scale"]
    state_file.write_text(json.dumps(state))
    assert _trainer(ring8, tmp_path, steps=20).fit(resume=True)["steps"] == 20


def test_a_cpu_trainer_keeps_freed_memory_for_reuse(ring8, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("genlab.train.trainer.retain_freed_memory", lambda: calls.append(1) or True)
    _trainer(ring8, tmp_path, device="cpu")
    assert calls == [1]
