"""`difix_ns.splat.torch_rasterization` against an independent brute-force renderer (CPU, small scenes).

The reference below re-derives everything from the 3DGS equations with no code shared with the rasterizer: its
own quaternion -> covariance, EWA projection, SH basis, and a per-Gaussian loop over the whole pixel grid that
applies gsplat 1.4.0's per-pixel rules (tile footprint, alpha clamp 0.999, skip alpha < 1/255, exclusive 1e-4
transmittance stop).
"""
from __future__ import annotations

import math

import pytest
import torch

from difix_ns.splat import rasterization, torch_rasterization

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def ref_sh_basis(degree: int, d: torch.Tensor) -> torch.Tensor:
    """Real SH basis (3DGS sign convention) at unit directions d [..., 3] -> [..., (degree+1)^2]."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def ref_project(mean, quat, scale, viewmat, K, W, H, eps2d=0.3):
    """One Gaussian -> (mean2d [2], conic 2x2 inverse cov, depth, radius, compensation)."""
    Rq = _rotmat(quat)
    cov3 = Rq @ torch.diag(scale**2) @ Rq.T
    Rv, tv = viewmat[:3, :3], viewmat[:3, 3]
    pc = Rv @ mean + tv
    covc = Rv @ cov3 @ Rv.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tz = pc[2]
    # gsplat clamps the Jacobian's x/z, y/z to 1.3x the field of view (guards against huge off-screen splats).
    limx = torch.stack([-(cx / fx + 0.3 * 0.5 * W / fx), (W - cx) / fx + 0.3 * 0.5 * W / fx])
    limy = torch.stack([-(cy / fy + 0.3 * 0.5 * H / fy), (H - cy) / fy + 0.3 * 0.5 * H / fy])
    tx = tz * torch.clamp(pc[0] / tz, limx[0], limx[1])
    ty = tz * torch.clamp(pc[1] / tz, limy[0], limy[1])
    J = torch.stack([torch.stack([fx / tz, 0 * tz, -fx * tx / tz**2]),
                     torch.stack([0 * tz, fy / tz, -fy * ty / tz**2])])
    cov2 = J @ covc @ J.T
    det0 = torch.det(cov2)
    cov2 = cov2 + eps2d * torch.eye(2, dtype=mean.dtype)
    det = torch.det(cov2)
    mean2d = torch.stack([fx * pc[0] / tz + cx, fy * pc[1] / tz + cy])
    b = 0.5 * (cov2[0, 0] + cov2[1, 1])
    radius = math.ceil(3 * math.sqrt((b + torch.sqrt(torch.clamp(b * b - det, min=0.01))).item()))
    return mean2d, torch.linalg.inv(cov2), tz, radius, torch.sqrt(torch.clamp(det0 / det, min=0))


def _rotmat(q):
    q = q / q.norm()
    w, x, y, z = q.unbind()
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ])


def ref_render(means, quats, scales, opacities, colors, viewmats, Ks, W, H, sh_degree=None, backgrounds=None,
               render_mode="RGB", antialiased=False, tile_size=16, near=0.01, far=1e10):
    """Brute force: per camera, loop over depth-sorted Gaussians, update every pixel's colour and transmittance.

    Returns render, alpha, means2d [C,N,2] (grad-retained), radii [C,N], per-pixel offset leaves for absgrad.
    """
    C, N = viewmats.shape[0], means.shape[0]
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pix = torch.stack([xs, ys], -1).to(means.dtype) + 0.5  # [H, W, 2]
    renders, alphas, m2d_all, radii_all, offsets = [], [], [], [], {}
    for c in range(C):
        items, m2d_c, radii_c = [], [], []
        campos = -viewmats[c, :3, :3].T @ viewmats[c, :3, 3]
        for g in range(N):
            m2d, conic, depth, radius, comp = ref_project(means[g], quats[g], scales[g], viewmats[c], Ks[c], W, H)
            visible = (near < depth < far) and (m2d[0] + radius > 0) and (m2d[0] - radius < W) and (
                m2d[1] + radius > 0) and (m2d[1] - radius < H)
            m2d_c.append(m2d)
            radii_c.append(radius if visible else 0)
            if not visible:
                continue
            if sh_degree is None:
                col = colors[g]
            else:
                d = means[g] - campos
                basis = ref_sh_basis(sh_degree, d / d.norm())
                col = torch.clamp_min(basis @ colors[g, : basis.shape[0]] + 0.5, 0.0)
            if render_mode == "RGB+ED":
                col = torch.cat([col, depth[None]])
            elif render_mode in ("D", "ED"):
                col = depth[None]
            opac = opacities[g] * (comp if antialiased else 1.0)
            items.append((float(depth), g, m2d, conic, col, opac, radius))
        m2d_all.append(torch.stack(m2d_c))
        radii_all.append(radii_c)
        items.sort(key=lambda it: (it[0], it[1]))
        D = items[0][4].shape[0] if items else (3 if render_mode != "D" else 1)
        color = torch.zeros(H, W, D, dtype=means.dtype)
        T = torch.ones(H, W, dtype=means.dtype)
        done = torch.zeros(H, W, dtype=torch.bool)
        tile_x, tile_y = (pix[..., 0] // tile_size), (pix[..., 1] // tile_size)
        for depth, g, m2d, conic, col, opac, radius in items:
            off = torch.zeros(H, W, 2, dtype=means.dtype, requires_grad=True)
            offsets[(c, g)] = off
            tx, ty, tr = m2d[0].item() / tile_size, m2d[1].item() / tile_size, radius / tile_size
            in_tile = (tile_x >= max(math.floor(tx - tr), 0)) & (tile_x < math.ceil(tx + tr)) & (
                tile_y >= max(math.floor(ty - tr), 0)) & (tile_y < math.ceil(ty + tr))
            dlt = (m2d + off) - pix
            sigma = 0.5 * (conic[0, 0] * dlt[..., 0] ** 2 + conic[1, 1] * dlt[..., 1] ** 2) + conic[0, 1] * dlt[
                ..., 0] * dlt[..., 1]
            alpha = torch.clamp_max(opac * torch.exp(-sigma), 0.999)
            take = in_tile & ~done & (sigma >= 0) & (alpha >= 1 / 255)
            next_T = T * (1 - alpha)
            done = done | (take & (next_T <= 1e-4))
            take = take & (next_T > 1e-4)
            color = color + torch.where(take[..., None], (alpha * T)[..., None] * col, torch.zeros_like(color))
            T = torch.where(take, next_T, T)
        acc = 1 - T
        if backgrounds is not None:
            bg = backgrounds[c] if render_mode == "RGB" else torch.cat([backgrounds[c], backgrounds.new_zeros(1)])
            if render_mode in ("D", "ED"):
                bg = backgrounds.new_zeros(1)
            color = color + (1 - acc)[..., None] * bg
        if render_mode in ("RGB+ED", "ED"):
            color = torch.cat([color[..., :-1], color[..., -1:] / acc[..., None].clamp(min=1e-10)], -1)
        renders.append(color)
        alphas.append(acc[..., None])
    return torch.stack(renders), torch.stack(alphas), torch.stack(m2d_all), torch.tensor(radii_all), offsets


def make_scene(n=40, n_cams=2, sh_degree=None, seed=0, W=37, H=29):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.6, 1.5]) - torch.tensor([1.0, 0.8, -2.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.12 + 0.02
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.4
    viewmats = torch.eye(4).repeat(n_cams, 1, 1)
    for c in range(n_cams):  # small yaw + shift per camera
        a = 0.15 * c
        viewmats[c, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        viewmats[c, :3, 3] = torch.tensor([0.1 * c, -0.05 * c, 0.0])
    Ks = torch.tensor([[30.0, 0, W / 2 + 0.3], [0, 31.0, H / 2 - 0.7], [0, 0, 1]]).repeat(n_cams, 1, 1)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats,
                Ks=Ks, width=W, height=H)


CASES = [
    dict(render_mode="RGB"),
    dict(render_mode="RGB+ED", backgrounds=True),
    dict(render_mode="RGB", rasterize_mode="antialiased", backgrounds=True),
    dict(render_mode="ED"),
    dict(render_mode="RGB", sh_degree=0),
    dict(render_mode="RGB+ED", sh_degree=1),
    dict(render_mode="RGB", sh_degree=2, backgrounds=True),
    dict(render_mode="RGB+ED", sh_degree=3),
    dict(render_mode="RGB", faint=True),  # many opacities near / below 1/255: exercises the opacity-aware cull
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("packed", [False, True])
def test_matches_brute_force(case, packed):
    sh_degree = case.get("sh_degree")
    scene = make_scene(sh_degree=sh_degree)
    if case.get("faint"):
        scene["opacities"] = scene["opacities"] ** 4 * 1.2
    bgs = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.1, 0.3]]) if case.get("backgrounds") else None
    mode = case["render_mode"]
    aa = case.get("rasterize_mode") == "antialiased"
    # chunk_elements=1024 forces 4-Gaussian batches, tile groups and the early-stop path.
    render, alpha, info = torch_rasterization(**scene, sh_degree=sh_degree, backgrounds=bgs, render_mode=mode,
                                              packed=packed, rasterize_mode="antialiased" if aa else "classic",
                                              chunk_elements=1024)
    ref, ref_alpha, _, ref_radii, _ = ref_render(**{k: v for k, v in scene.items() if k not in ("width", "height")},
                                                W=scene["width"], H=scene["height"], sh_degree=sh_degree,
                                                backgrounds=bgs, render_mode=mode, antialiased=aa)
    channels = {"RGB": 3, "RGB+ED": 4, "ED": 1}[mode]
    assert render.shape == (2, 29, 37, channels) and alpha.shape == (2, 29, 37, 1)
    assert alpha.max() > 0.5, "scene should cover pixels"
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-5, rtol=0)
    if mode in ("RGB+ED", "ED"):  # depth is divided by alpha: compare where the pixel is covered
        cov = ref_alpha[..., 0] > 1e-3
        torch.testing.assert_close(render[..., -1][cov], ref[..., -1][cov], atol=1e-4, rtol=1e-5)
        render, ref = render[..., :-1], ref[..., :-1]
    torch.testing.assert_close(render, ref, atol=1e-5, rtol=0)
    if not packed:
        assert info["radii"].shape == (2, 40) and info["radii"].dtype == torch.int32
        assert torch.equal(info["radii"], ref_radii.int())


def test_gradients_and_absgrad_match_brute_force():
    scene = make_scene(n=25, sh_degree=1, seed=3)
    leaves = {k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")}
    inputs = {**scene, **leaves}
    target = torch.rand(2, 29, 37, 3, generator=torch.Generator().manual_seed(1))
    render, alpha, info = torch_rasterization(**inputs, sh_degree=1, packed=False, absgrad=True, chunk_elements=1024)
    info["means2d"].retain_grad()  # what DefaultStrategy.step_pre_backward does
    ((render - target) ** 2).sum().add(alpha.sum()).backward()
    ours = {k: v.grad.clone() for k, v in leaves.items()}
    m2d_grad, m2d_abs = info["means2d"].grad, info["means2d"].absgrad

    leaves_ref = {k: scene[k].clone().requires_grad_(True) for k in leaves}
    ref, ref_alpha, ref_m2d, radii, offsets = ref_render(
        **{**{k: v for k, v in scene.items() if k not in ("width", "height")}, **leaves_ref},
        W=37, H=29, sh_degree=1)
    ref_m2d.retain_grad()
    ((ref - target) ** 2).sum().add(ref_alpha.sum()).backward()
    for k in leaves:
        torch.testing.assert_close(ours[k], leaves_ref[k].grad, atol=2e-4, rtol=1e-3, msg=f"grad of {k}")
    vis = radii > 0
    ref_abs = torch.zeros(2, 25, 2)
    for (c, g), off in offsets.items():
        ref_m2d_grad_cg = off.grad.sum((0, 1))
        torch.testing.assert_close(m2d_grad[c, g], ref_m2d_grad_cg, atol=2e-4, rtol=1e-3)
        ref_abs[c, g] = off.grad.abs().sum((0, 1))
    torch.testing.assert_close(m2d_abs[vis], ref_abs[vis], atol=2e-4, rtol=1e-3)
    assert (m2d_abs[vis].sum(-1) > 0).any() and (m2d_abs >= m2d_grad.abs() - 1e-6).all()


def test_info_matches_gsplat_140_layout():
    scene = make_scene(n=30)
    scene["means"].requires_grad_(True)
    render, alpha, info = rasterization(**scene, packed=False, render_mode="RGB+ED")
    C, N = 2, 30
    assert info["means2d"].shape == (C, N, 2) and info["means2d"].requires_grad
    assert info["radii"].shape == (C, N) and info["radii"].dtype == torch.int32
    assert info["depths"].shape == (C, N) and info["conics"].shape == (C, N, 3)
    assert info["opacities"].shape == (C, N) and info["gaussian_ids"] is None
    assert (info["width"], info["height"], info["n_cameras"], info["tile_size"]) == (37, 29, 2, 16)
    assert (info["tile_width"], info["tile_height"]) == (3, 2) and info["tiles_per_gauss"].shape == (C, N)
    assert torch.equal(info["tiles_per_gauss"] > 0, info["radii"] > 0)


def test_bad_arguments_name_the_problem():
    scene = make_scene(n=5)
    with pytest.raises(ValueError, match="render_mode"):
        torch_rasterization(**scene, render_mode="RGBD")
    with pytest.raises(ValueError, match="sh_degree=3"):
        torch_rasterization(**{**scene, "colors": torch.rand(5, 4, 3)}, sh_degree=3)
    with pytest.raises(ValueError, match="opacities"):
        torch_rasterization(**{**scene, "opacities": torch.rand(5, 1)})


def test_large_view_renders_in_bounded_memory():
    """A 270x480 view with 50k Gaussians (quarter-res fox size) renders in chunks without a [H*W, N] buffer."""
    g = torch.Generator().manual_seed(0)
    n = 50_000
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.5, 2.5, 1.0]) + torch.tensor([0.0, 0.0, 6.0])
    Ks = torch.tensor([[[340.0, 0, 135], [0, 340.0, 240], [0, 0, 1]]])
    with torch.no_grad():
        render, alpha, info = rasterization(means, torch.randn(n, 4, generator=g), torch.full((n, 3), 0.03),
                                            torch.full((n,), 0.6), torch.rand(n, 3, generator=g),
                                            torch.eye(4)[None], Ks, 270, 480, packed=False)
    assert render.shape == (1, 480, 270, 3) and torch.isfinite(render).all()
    assert alpha.mean() > 0.5 and (info["radii"] > 0).sum() > 40_000


def test_absgrad_hook_does_not_keep_means2d_alive():
    """The absgrad hook must not hold its own tensor: autograd's C++ side would close an uncollectable cycle and
    every training step would leak its means2d (with grad and absgrad)."""
    import gc
    import weakref

    scene = make_scene(n=20)
    means = scene["means"].clone().requires_grad_(True)
    render, alpha, info = torch_rasterization(**{**scene, "means": means}, packed=False, absgrad=True)
    info["means2d"].retain_grad()
    render.sum().backward()
    assert info["means2d"].absgrad.abs().sum() > 0  # the hook still fills absgrad
    ref = weakref.ref(info["means2d"])
    del render, alpha, info
    gc.collect()
    assert ref() is None, "means2d is still alive after its render was dropped"
