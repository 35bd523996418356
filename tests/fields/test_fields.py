"""Geometry and appearance networks: IDR SDF MLP (geometric init, skip wiring, weight norm),
positional encoding, residual SDF, NeuFaceField's SDF / gradient contract, SIREN appearance and
the integrated-basis BRDF network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuface_ns.errors import ConfigError
import torch.nn.functional as F

from neuface_ns.brdf import IntegratedBasis, IntegratedBasisConfig
from neuface_ns.fields.appearance import SpatialAppearanceConfig
from neuface_ns.fields.neuface_field import NeuFaceFieldConfig
from neuface_ns.fields.sdf import IDRSDFNetworkConfig, PositionalEncoding

SMALL = dict(hidden_dim=64, num_layers=4, skip_layers=(2,))


def _ball_points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dirs = F.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return dirs * torch.rand(n, 1, generator=g) ** (1.0 / 3.0)


def _radial_profile(net, n_dirs=200, n_radii=41, seed=123):
    g = torch.Generator().manual_seed(seed)
    dirs = F.normalize(torch.randn(n_dirs, 3, generator=g), dim=-1)
    radii = torch.linspace(0.0, 1.0, n_radii)
    with torch.no_grad():
        values = net((dirs[:, None, :] * radii[None, :, None]).reshape(-1, 3))
    return radii, values.reshape(n_dirs, n_radii)


# --------------------------------------------------------------------------- positional encoding
def test_positional_encoding_layout():
    enc = PositionalEncoding(3)
    x = torch.tensor([[0.1, -0.2, 0.3], [0.5, 0.0, -1.0]])
    out = enc(x)
    assert enc.output_dim == 3 + 6 * 3 == out.shape[-1]
    scaled = torch.cat([2.0**k * x for k in range(3)], dim=-1)  # [x 2^0, x 2^1, x 2^2]
    expected = torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-7)
    assert torch.equal(PositionalEncoding(0)(x), x)


# --------------------------------------------------------------------------- IDR SDF network
@pytest.mark.parametrize("seed", [0, 1])
def test_geometric_init_default_size_approximates_sphere(seed):
    torch.manual_seed(seed)
    net = IDRSDFNetworkConfig().setup()  # paper preset: 8 x 512, PE 6, skip 4, softplus 100, weight norm
    radii, values = _radial_profile(net)
    target = radii - 0.6
    err = (values - target).abs()
    # softplus(beta=100) adds log(2)/100 per unit, so the init is only approximately |x| - 0.6
    assert float(err.mean()) < 0.25
    assert float(err[:, radii >= 0.3].max()) < 0.35
    assert float(values[:, 0].max()) < -0.1  # inside at the centre
    assert float(values[:, -1].min()) > 0.2  # outside on the unit sphere
    # one zero crossing per direction, between radius 0.3 and 0.75
    crossing = radii[(values > 0).float().argmax(dim=1)]
    assert float(crossing.min()) >= 0.3 and float(crossing.max()) <= 0.75
    # nearly isotropic on the sphere of radius 0.6
    assert float(values[:, int((radii - 0.6).abs().argmin())].std()) < 0.06


@pytest.mark.parametrize("config", [IDRSDFNetworkConfig(softplus_beta=1e5), IDRSDFNetworkConfig(softplus_beta=1e5, **SMALL)])
def test_geometric_init_relu_limit_is_the_sphere_sdf(config):
    """With a (near) ReLU activation the SAL/IDR initialisation is |x| - 0.6 in expectation, and exactly
    -0.6 at the origin (every pre-activation is 0 there)."""
    torch.manual_seed(0)
    net = config.setup()
    radii, values = _radial_profile(net)
    np.testing.assert_allclose(values[:, 0].numpy(), -0.6, atol=1e-3)
    err = (values - (radii - 0.6)).abs()
    assert float(err.mean()) < (0.08 if config.hidden_dim == 512 else 0.2)
    # monotone along rays (a distance-like function)
    assert float((values[:, 1:] - values[:, :-1]).min()) > 0


def test_geometric_init_small_size():
    torch.manual_seed(0)
    net = IDRSDFNetworkConfig(**SMALL).setup()
    radii, values = _radial_profile(net)
    assert float((values - (radii - 0.6)).abs().mean()) < 0.2
    assert float(values[:, 0].max()) < -0.3
    assert float(values[:, -1].mean()) > 0.1


def test_geometric_init_silences_the_encoding_and_sets_bias():
    torch.manual_seed(0)
    config = IDRSDFNetworkConfig(**SMALL, num_frequencies=6)
    net = config.setup()
    d_in = 3 + 6 * 6
    w0 = net.layers[0].weight
    assert torch.count_nonzero(w0[:, 3:]) == 0 and torch.count_nonzero(w0[:, :3]) > 0
    w_skip = net.layers[2].weight
    assert torch.count_nonzero(w_skip[:, -(d_in - 3) :]) == 0
    assert torch.count_nonzero(w_skip[:, : -(d_in - 3)]) > 0  # hidden units and the raw xyz feed the skip layer
    last = net.layers[-1]
    np.testing.assert_allclose(last.bias.detach().numpy(), [-0.6])
    np.testing.assert_allclose(last.weight.detach().mean().item(), math.sqrt(math.pi) / math.sqrt(64), rtol=1e-3)
    # at init the output is independent of the high frequencies: x and x + a shift that only changes them
    # cannot be built directly, but the encoding's gradient path must be zero
    x = _ball_points(16, 0).requires_grad_(True)
    encoded = net.encoding(x).detach().requires_grad_(True)
    h = encoded
    for i, layer in enumerate(net.layers):
        if i in config.skip_layers:
            h = torch.cat([h, encoded], dim=-1) / math.sqrt(2.0)
        h = layer(h)
        if i < len(net.layers) - 1:
            h = net.activation(h)
    (g,) = torch.autograd.grad(h.sum(), encoded)
    assert torch.count_nonzero(g[:, 3:]) == 0 and torch.count_nonzero(g[:, :3]) > 0


def test_idr_skip_layer_wiring_and_manual_forward():
    torch.manual_seed(0)
    config = IDRSDFNetworkConfig(hidden_dim=48, num_layers=6, skip_layers=(3,), num_frequencies=2, use_weight_norm=False)
    net = config.setup()
    d_in = 3 + 6 * 2
    widths = [(layer.in_features, layer.out_features) for layer in net.layers]
    assert widths == [(d_in, 48), (48, 48), (48, 48 - d_in), (48, 48), (48, 48), (48, 48), (48, 1)]
    with torch.no_grad():  # random weights so that no zero initialisation hides a wiring mistake
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    x = _ball_points(32, 1)
    h = torch.cat([x, torch.sin(torch.cat([x, 2 * x], -1)), torch.cos(torch.cat([x, 2 * x], -1))], -1)
    enc = h
    for i, layer in enumerate(net.layers):
        if i == 3:
            h = torch.cat([h, enc], dim=-1) / math.sqrt(2.0)
        h = F.linear(h, layer.weight, layer.bias)
        if i < 6:
            h = F.softplus(h, beta=100.0)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), h.numpy(), rtol=1e-5, atol=1e-6)
        # the skip connection alone carries the input: with layer 0 silenced the output still depends on x
        net.layers[0].weight.zero_()
        net.layers[0].bias.zero_()
        out = net(x)
    assert float(out.std()) > 1e-3


def test_weight_norm_is_used_and_trainable():
    torch.manual_seed(0)
    net = IDRSDFNetworkConfig(**SMALL).setup()
    names = {n for n, _ in net.named_parameters()}
    assert "layers.0.parametrizations.weight.original0" in names  # g
    assert "layers.0.parametrizations.weight.original1" in names  # v
    plain = IDRSDFNetworkConfig(**SMALL, use_weight_norm=False).setup()
    assert "layers.0.weight" in {n for n, _ in plain.named_parameters()}


def test_too_narrow_sdf_network_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="hidden-dim=32 is too narrow"):
        IDRSDFNetworkConfig(hidden_dim=32, num_frequencies=6).setup()


# --------------------------------------------------------------------------- residual + field
def test_residual_sdf_starts_at_zero_and_field_adds_it(small_field_config):
    torch.manual_seed(0)
    field = small_field_config(residual=True).setup()
    x = _ball_points(64, 2)
    with torch.no_grad():
        sdf, residual = field.sdf_parts(x)
        assert residual.shape == (64, 1) and torch.count_nonzero(residual) == 0
        np.testing.assert_allclose(sdf.numpy(), field.sdf_network(x).numpy())
        head = field.residual.mlp[-1]
        head.weight.normal_(0.0, 0.5)
        head.bias.fill_(0.1)
        sdf, residual = field.sdf_parts(x)
        assert float(residual.abs().min()) > 0
        np.testing.assert_allclose(sdf.numpy(), (field.sdf_network(x) + field.residual(x)).numpy(), atol=1e-6)
        geo = field.forward_geonetwork(x)
    assert geo.shape == (64, 1)
    np.testing.assert_allclose(geo[:, 0].numpy(), sdf[:, 0].numpy(), atol=1e-7)
    no_res = small_field_config(residual=False).setup()
    assert no_res.sdf_parts(x)[1] is None


def test_forward_geonetwork_contract_for_nerfstudio(small_field_config):
    torch.manual_seed(0)
    field = small_field_config().setup()
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.95]])
    out = field.forward_geonetwork(x).detach()
    assert out.shape == (2, 1)
    assert float(out[0, 0]) < 0 < float(out[1, 0])  # column 0 is the SDF (negative inside)


@pytest.mark.parametrize("residual", [False, True])
def test_sdf_and_gradient_matches_finite_differences(small_field_config, residual):
    torch.manual_seed(0)
    field = small_field_config(residual=residual).setup().double()
    if residual:
        with torch.no_grad():
            field.residual.mlp[-1].weight.normal_(0.0, 0.3)
    x = _ball_points(20, 3).double()
    sdf, gradient, res = field.sdf_and_gradient(x, create_graph=False)
    assert sdf.shape == (20, 1) and gradient.shape == (20, 3)
    assert (res is not None) == residual
    h = 1e-6
    fd = torch.stack(
        [
            (field.sdf(x + h * e) - field.sdf(x - h * e))[:, 0] / (2 * h)
            for e in torch.eye(3, dtype=torch.float64)
        ],
        dim=-1,
    ).detach()
    np.testing.assert_allclose(gradient.detach().numpy(), fd.numpy(), rtol=1e-5, atol=1e-6)
    # the same under an outer no_grad (viewer / eval)
    with torch.no_grad():
        _, gradient_ng, _ = field.sdf_and_gradient(x, create_graph=False)
    np.testing.assert_allclose(gradient_ng.numpy(), gradient.detach().numpy())
    assert not gradient_ng.requires_grad


def test_sdf_gradient_with_create_graph_reaches_parameters(small_field_config):
    torch.manual_seed(0)
    field = small_field_config().setup()
    x = _ball_points(32, 4)
    _, gradient, _ = field.sdf_and_gradient(x, create_graph=True)
    eikonal = ((gradient.norm(dim=-1) - 1) ** 2).mean()
    eikonal.backward()
    # every SDF parameter except the output bias (which does not change the spatial gradient)
    named = dict(field.sdf_network.named_parameters())
    assert named.pop(f"layers.{len(field.sdf_network.layers) - 1}.bias").grad is None
    grads = [p.grad for p in named.values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_num_basis_mismatch_is_rejected():
    with pytest.raises(ValueError, match="num_basis"):
        NeuFaceFieldConfig(
            appearance=SpatialAppearanceConfig(hidden_dim=8, num_layers=2, skip_layers=(), num_basis=3),
            integrated_basis=IntegratedBasisConfig(hidden_dim=8, num_layers=1, num_basis=2),
        ).setup()


# --------------------------------------------------------------------------- appearance
@pytest.mark.parametrize("k, specular_channels", [(3, 1), (2, 3)])
def test_spatial_appearance_heads(k, specular_channels):
    torch.manual_seed(0)
    config = SpatialAppearanceConfig(hidden_dim=32, num_layers=4, skip_layers=(2,), num_basis=k, specular_channels=specular_channels)
    net = config.setup()
    x = _ball_points(50, 5)
    out = net(x)
    assert out["roughness"].shape == (50, 1)
    assert out["brdf_coefficients"].shape == (50, k)
    assert out["albedo"].shape == (50, 3)
    assert out["specular_intensity"].shape == (50, specular_channels)
    # manual SIREN forward with the wiring of docs/method.md section 3: sin(30 (W h + b)), xyz concatenated again at layer 2
    h = x
    for i, layer in enumerate(net.layers):
        if i == 2:
            h = torch.cat([h, x], dim=-1)
        h = torch.sin(30.0 * layer.linear(h))
    raw = net.head(h)
    np.testing.assert_allclose(out["roughness"].detach().numpy(), F.softplus(raw[:, :1]).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["brdf_coefficients"].detach().numpy(), raw[:, 1 : 1 + k].detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["albedo"].detach().numpy(), torch.sigmoid(raw[:, 1 + k : 4 + k]).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["specular_intensity"].detach().numpy(), torch.sigmoid(raw[:, 4 + k :]).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert (out["roughness"] > 0).all() and ((out["albedo"] > 0) & (out["albedo"] < 1)).all()
    # the first layer's weights follow SIREN's U(-1/in, 1/in)
    assert float(net.layers[0].linear.weight.detach().abs().max()) <= 1.0 / 3.0


def test_integrated_basis_input_is_cos_wo_n_rho():
    torch.manual_seed(0)
    net = IntegratedBasisConfig(hidden_dim=16, num_layers=2, num_basis=3).setup()
    assert isinstance(net, IntegratedBasis)
    assert net.mlp[0].in_features == 8
    w_o = F.normalize(torch.randn(10, 3), dim=-1)
    n = F.normalize(torch.randn(10, 3), dim=-1)
    rho = torch.rand(10, 1)
    expected = net.mlp(torch.cat([(n * w_o).sum(-1, keepdim=True), w_o, n, rho], dim=-1))
    np.testing.assert_allclose(net(w_o, n, rho).detach().numpy(), expected.detach().numpy(), atol=1e-6)
    assert net(w_o, n, rho).shape == (10, 3)


# --------------------------------------------------------------------------- tri-plane appearance
def test_triplane_features_match_scipy_bilinear_interpolation():
    """Each level is the sum over the xy, xz, yz planes of bilinear interpolation on a grid spanning [-1, 1]
    (vertex-aligned); scipy's RegularGridInterpolator is the independent reference."""
    from scipy.interpolate import RegularGridInterpolator

    from neuface_ns.fields.appearance import MultiResolutionTriplane

    torch.manual_seed(0)
    grid = MultiResolutionTriplane(resolutions=(5, 9), features=3, init_scale=1.0).double()
    x = (torch.rand(200, 3, dtype=torch.float64) * 2 - 1) * 0.999
    got = grid(x).detach().numpy()
    expected = []
    for plane in grid.planes:
        r = plane.shape[-1]
        axis = np.linspace(-1.0, 1.0, r)
        level = np.zeros((x.shape[0], plane.shape[1]))
        for p, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
            for f in range(plane.shape[1]):
                # grid_sample's (u, v) = (first, second) coordinate indexes (column, row) of the plane
                values = plane[p, f].detach().numpy().T  # values[col, row]
                level[:, f] += RegularGridInterpolator((axis, axis), values)(x[:, [a, b]].numpy())
        expected.append(level)
    np.testing.assert_allclose(got, np.concatenate(expected, axis=1), atol=1e-10)


def test_triplane_appearance_keeps_the_position_gradient():
    """IDR's surface rendering moves the surface point through the appearance: d material / dx must be the
    true derivative (finite differences), not cut as in nerfstudio's TriplaneEncoding."""
    from neuface_ns.fields.appearance import TriplaneAppearanceConfig

    torch.manual_seed(1)
    net = TriplaneAppearanceConfig(resolutions=(8, 16), features_per_level=4, init_scale=1.0).setup().double()
    x = (torch.rand(16, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    out = net(x)["albedo"].sum()
    (grad,) = torch.autograd.grad(out, x)
    h, numeric = 1e-6, torch.zeros_like(x)
    for k in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[k] = h
        with torch.no_grad():
            plus = net(x + step)["albedo"].sum(-1)
            minus = net(x - step)["albedo"].sum(-1)
        numeric[:, k] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), numeric.numpy(), rtol=1e-5, atol=1e-7)
    assert float(grad.abs().sum()) > 0


def test_triplane_appearance_outputs_and_its_own_param_group(make_model, small_field_config):
    from neuface_ns.fields.appearance import TriplaneAppearanceConfig

    sdf_field = small_field_config(specular_channels=3)
    sdf_field.appearance = TriplaneAppearanceConfig(num_basis=3, specular_channels=3)
    model = make_model("surface", sdf_field=sdf_field)
    material = model.field.material(torch.rand(7, 3) * 2 - 1)
    assert {k: tuple(v.shape) for k, v in material.items()} == {
        "roughness": (7, 1), "brdf_coefficients": (7, 3), "albedo": (7, 3), "specular_intensity": (7, 3)}
    assert float(material["albedo"].min()) > 0 and float(material["albedo"].max()) < 1
    assert float(material["roughness"].min()) > 0
    groups = model.get_param_groups()
    planes = {id(p) for p in model.field.appearance.grid.planes}
    assert {id(p) for p in groups["appearance_grid"]} == planes
    assert not planes & {id(p) for p in groups["fields"]}
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for n, p in model.named_parameters() if n != "device_indicator_param"}


@pytest.mark.parametrize("initial", [0.02, 0.1, 0.5])
def test_triplane_initial_roughness_is_where_training_starts(initial):
    """softplus(bias) = initial_roughness: the roughness of a fresh network at random points lies around it (the
    head's random weights add a little spread), and without the option it is softplus(~0) = log 2."""
    from neuface_ns.fields.appearance import TriplaneAppearanceConfig

    points = torch.rand(2000, 3) * 2 - 1
    torch.manual_seed(0)
    rough = TriplaneAppearanceConfig(initial_roughness=initial).setup()(points)["roughness"]
    assert float(rough.median()) == pytest.approx(initial, rel=0.25)
    torch.manual_seed(0)
    default = TriplaneAppearanceConfig().setup()(points)["roughness"]
    assert float(default.median()) == pytest.approx(math.log(2.0), rel=0.25)
