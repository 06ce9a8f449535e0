"""Training maths of NiFi (CPU): the φ⁻ surrogate's gradient, g's definition, and which parameters each step touches."""
from __future__ import annotations


import pytest
import torch

from nifi_ns.restoration import lora as L
from nifi_ns.training import losses as Lo
from conftest import FOX_IMAGES_4 as FOX


def test_surrogate_gradient_wrt_x_hat_is_exactly_g():
    torch.manual_seed(0)
    x_hat = torch.randn(2, 16, 6, 5, requires_grad=True)
    g = torch.randn(2, 16, 6, 5) * 0.3
    loss = Lo.distribution_matching_loss(x_hat, g)
    (grad,) = torch.autograd.grad(loss, x_hat)
    assert torch.equal(grad, g)
    literal = 0.5 * (x_hat - (x_hat - g).detach()).pow(2).sum()  # the formula as written, for comparison
    (literal_grad,) = torch.autograd.grad(literal, x_hat)
    assert loss.item() == pytest.approx(literal.item(), rel=1e-5)
    assert torch.allclose(literal_grad, g, atol=1e-6)
    # through a network: the chain rule delivers g·∂x̂/∂φ, i.e. the same update as autograd on the literal form
    w = torch.randn(5, requires_grad=True)
    (gw,) = torch.autograd.grad(Lo.distribution_matching_loss(x_hat.detach() * w, g), w)
    assert torch.allclose(gw, (g * x_hat.detach()).sum(dim=(0, 1, 2)), atol=1e-5)


def test_g_combines_kl_and_gt_directions_with_alpha():
    torch.manual_seed(1)
    vt_fake, vc_fake, vt_real = (torch.randn(3, 4, 2, 2) for _ in range(3))
    sigma = torch.tensor([0.1, 0.5, 0.9])
    g = Lo.distribution_matching_gradient(sigma, vt_fake, vc_fake, vt_real, alpha=0.7)
    s2 = (sigma ** 2).view(-1, 1, 1, 1)
    expected = 0.7 * s2 * (vt_fake - vc_fake) + 0.3 * s2 * (vt_fake - vt_real)
    assert torch.allclose(g, expected, atol=1e-7)
    # when the critic agrees with the teacher and the photo is restored perfectly, there is nothing to correct
    assert torch.count_nonzero(Lo.distribution_matching_gradient(sigma, vt_fake, vt_fake, vt_fake)) == 0
    assert torch.allclose(Lo.cfg(vc_fake, vt_fake, 7.5), vc_fake + 7.5 * (vt_fake - vc_fake))


def test_critic_flow_loss_is_zero_for_the_exact_velocity():
    x, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    assert float(Lo.critic_flow_loss(eps - x, eps, x)) == 0.0
    assert float(Lo.critic_flow_loss(torch.zeros_like(x), eps, x)) > 0


@pytest.fixture(scope="module", params=["sd3", "sdturbo"])
def trainer(request, tmp_path_factory):
    if not FOX.is_dir():
        pytest.skip(f"fox images not found at {FOX} (../shared/data absent)")
    from nifi_ns.restoration.testing import MAKERS
    from nifi_ns.training.config import NiFiTrainingConfig
    from nifi_ns.training.synthetic_pairs import write_synthetic_pairs
    from nifi_ns.training.trainer import NiFiTrainer

    root = tmp_path_factory.mktemp(f"train_{request.param}")
    pairs = write_synthetic_pairs(FOX, root / "pairs", rates=("1.0",), max_images=3, caption="a fox figurine")
    cfg = NiFiTrainingConfig()
    cfg.model.backbone = request.param
    cfg.model.model_path = str(MAKERS[request.param](root / "model"))
    cfg.model.lora_rank = cfg.model.critic_lora_rank = 4
    cfg.model.lora_alpha = 4.0
    cfg.model.dtype = "float32"
    cfg.train.batch_size, cfg.train.crop_size, cfg.train.num_workers = 2, 64, 0
    cfg.train.lr_phi_minus = cfg.train.lr_phi_plus = 1e-3  # large, so one step visibly moves the adapters
    cfg.loss_weights.lpips_net = "alex"
    return NiFiTrainer(cfg, pairs, root / "exp", device="cpu", log=lambda s: None)


def _batch(trainer):
    batch = next(iter(trainer.loader))
    return batch["clean"], batch["degraded"], list(batch["caption"])


def _snapshot(params):
    return [p.detach().clone() for p in params]


def test_critic_step_touches_only_phi_plus(trainer):
    bb = trainer.backbone
    base = [p for n, p in bb.denoiser.named_parameters() if "lora_" not in n]
    assert base and not any(p.requires_grad for p in base)  # the teacher is frozen
    clean, degraded, captions = _batch(trainer)
    with torch.no_grad():
        x_hat, _ = trainer.restorer.generate(degraded * 2 - 1, torch.randn(trainer.restorer.latent_shape(2, 64, 64)))
    for p in trainer.params_minus + trainer.params_plus:
        p.grad = None
    minus_before, plus_before, base_before = (_snapshot(trainer.params_minus), _snapshot(trainer.params_plus),
                                              _snapshot(base[:20]))
    out = trainer.critic_step(x_hat, captions)
    assert out["loss_critic"] > 0 and out["grad_norm_phi_plus"] > 0
    assert all(p.grad is None for p in trainer.params_minus)
    assert all(p.grad is not None for p in trainer.params_plus)
    assert all(torch.equal(a, p) for a, p in zip(minus_before, trainer.params_minus))
    assert all(torch.equal(a, p) for a, p in zip(base_before, base[:20]))
    assert any(not torch.equal(a, p) for a, p in zip(plus_before, trainer.params_plus))
    assert all(p.grad is None for p in base)


def test_generator_step_touches_only_phi_minus_including_the_vae_encoder(trainer):
    bb = trainer.backbone
    clean, degraded, captions = _batch(trainer)
    for p in trainer.params_minus + trainer.params_plus:
        p.grad = None
    plus_before = _snapshot(trainer.params_plus)
    out = trainer.generator_step(clean, degraded, captions)
    assert set(out) >= {"x_hat", "loss_generator", "loss_kl", "loss_l2", "loss_lpips", "grad_norm_phi_minus"}
    assert all(p.grad is None for p in trainer.params_plus)
    assert all(torch.equal(a, p) for a, p in zip(plus_before, trainer.params_plus))
    vae_minus = L.adapter_parameters(bb.vae, L.PHI_MINUS)
    assert vae_minus and any(p.grad is not None and p.grad.abs().sum() > 0 for p in vae_minus)
    den_minus = L.adapter_parameters(bb.denoiser, L.PHI_MINUS)
    assert all(p.grad is not None for p in den_minus)  # every φ⁻ layer of the denoiser is trained
    dead = sorted(n for n, p in bb.denoiser.named_parameters()
                  if f"lora_B.{L.PHI_MINUS}" in n and p.grad.abs().sum() == 0)
    # SD3's last block is context_pre_only: its context queries feed nothing, so that one LoRA gets a zero gradient
    last = f"transformer_blocks.{len(getattr(bb.denoiser, 'transformer_blocks', [])) - 1}.attn.add_q_proj"
    assert all(n.startswith(last) for n in dead), dead
    assert 0 < out["sigma_mean"] < 1 and out["g_abs_mean"] >= 0
