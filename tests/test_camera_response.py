"""The camera response (neuface_ns/camera_response.py): the sRGB encoding against scikit-image's sRGB conversion,
its gradient at the degenerate values (black, the break point), what the data declare through both dataparsers
("auto"), and a model rendering through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.color import xyz2rgb
from skimage.color.colorconv import xyz_from_rgb

from neuface_ns.camera_response import declared_image_encoding, encode, resolve_image_encoding, srgb_encode
from neuface_ns.data.dtu import SAMPLE_DTU_DIR, NeuFaceDTUDataParserConfig
from neuface_ns.data.facescape import SAMPLE_FACESCAPE_DIR, NeuFaceFaceScapeDataParserConfig
from neuface_ns.errors import NeuFaceInputError

SCAN_SAMPLE_DIR = SAMPLE_DTU_DIR.parent / "scan"


def _skimage_encode(linear: np.ndarray) -> np.ndarray:
    """scikit-image's linear sRGB -> encoded sRGB (xyz2rgb applies the transfer function after the matrix)."""
    return xyz2rgb(linear @ xyz_from_rgb.T)


def test_srgb_encode_matches_scikit_image():
    rng = np.random.default_rng(0)
    linear = np.concatenate([rng.random((500, 3)), [[0.0, 0.0031308, 1.0], [1e-5, 0.0031, 0.0032], [0.18, 0.5, 0.9]]])
    ours = srgb_encode(torch.from_numpy(linear)).numpy()
    np.testing.assert_allclose(ours, _skimage_encode(linear), atol=2e-6)
    assert abs(float(srgb_encode(torch.tensor(0.18))) - 0.4614) < 1e-3  # 18 % grey is about 118 / 255


@pytest.mark.parametrize("value", [0.0, 1e-7, 0.003, 0.0031308, 0.0032, 0.5, 1.0])
def test_srgb_encode_has_a_finite_positive_slope_everywhere(value):
    x = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    srgb_encode(x).backward()
    assert torch.isfinite(x.grad) and 0.0 < float(x.grad) <= 12.92 + 1e-9
    if value == 0.0031308:
        return  # the break point itself: the two branches' slopes differ by 2 % (12.92 against 12.70)
    # the slope of scikit-image's curve by a one-sided difference that stays on the value's side of the break
    h = 1e-8 if value < 1.0 else -1e-8
    reference = (_skimage_encode(np.full((1, 3), value + h)) - _skimage_encode(np.full((1, 3), value)))[0, 0] / h
    assert float(x.grad) == pytest.approx(float(reference), rel=1e-4)


def test_linear_encoding_is_the_identity_and_unknown_names_are_errors():
    values = torch.rand(10, 3)
    assert torch.equal(encode(values, "linear"), values)
    with pytest.raises(ValueError, match="gamma"):
        encode(values, "gamma")
    with pytest.raises(ValueError, match="image_encoding"):
        resolve_image_encoding("srgb2", {})


def test_auto_takes_what_the_data_declare_and_srgb_otherwise():
    assert resolve_image_encoding("auto", {"image_encoding": "linear"}) == "linear"
    assert resolve_image_encoding("auto", {"image_encoding": "srgb"}) == "srgb"
    assert resolve_image_encoding("auto", {}) == "srgb"
    assert resolve_image_encoding("auto", None) == "srgb"
    assert resolve_image_encoding("linear", {"image_encoding": "srgb"}) == "linear"  # an explicit setting wins


def test_scene_json_declarations_and_bad_ones_name_the_file(tmp_path):
    assert declared_image_encoding(tmp_path) is None  # no scene.json
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"generator": "somebody"}))
    assert declared_image_encoding(tmp_path) is None
    scene.write_text(json.dumps({"image_encoding": "linear"}))
    assert declared_image_encoding(tmp_path) == "linear"
    for text, message in ((json.dumps({"image_encoding": "rec709"}), "image_encoding must be one of linear, srgb"),
                          ("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")):
        scene.write_text(text)
        with pytest.raises(NeuFaceInputError, match=message) as error:
            declared_image_encoding(tmp_path)
        assert str(scene) in str(error.value)


def test_the_bundled_samples_declare_how_they_were_rendered():
    """The synthetic samples come from a renderer without a tone curve; the path-traced scan is Cycles' sRGB; its
    FaceScape layout declares nothing, as a FaceScape release does, so "auto" reads it as photos (sRGB)."""
    dtu = NeuFaceDTUDataParserConfig(data=SAMPLE_DTU_DIR).setup().get_dataparser_outputs(split="train")
    face = NeuFaceFaceScapeDataParserConfig(data=SAMPLE_FACESCAPE_DIR).setup().get_dataparser_outputs(split="train")
    scan = NeuFaceDTUDataParserConfig(data=SCAN_SAMPLE_DIR).setup().get_dataparser_outputs(split="train")
    scan_face = NeuFaceFaceScapeDataParserConfig(data=SCAN_SAMPLE_DIR / "facescape").setup().get_dataparser_outputs(
        split="train"
    )
    assert dtu.metadata["image_encoding"] == "linear"
    assert face.metadata["image_encoding"] == "linear"
    assert scan.metadata["image_encoding"] == "srgb"
    assert "image_encoding" not in scan_face.metadata
    assert resolve_image_encoding("auto", scan_face.metadata) == "srgb"


def test_an_auto_model_reads_the_dataparser_metadata():
    from nerfstudio.data.scene_box import SceneBox

    from neuface_ns.models import MODEL_CONFIGS

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    config = MODEL_CONFIGS["surface"](image_encoding="auto")
    assert config.setup(scene_box=box, num_train_data=2, metadata={"image_encoding": "linear"}).image_encoding == "linear"
    assert config.setup(scene_box=box, num_train_data=2, metadata={}).image_encoding == "srgb"
    assert MODEL_CONFIGS["surface"]().setup(scene_box=box, num_train_data=2, metadata={}).image_encoding == "linear"


def _rays(n: int, seed: int):
    """Rays from a sphere of radius 2.5 aimed near the origin: most of them hit the initial SDF sphere."""
    from nerfstudio.cameras.rays import RayBundle

    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 2.5
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=g) * 0.35 - origins, dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                     camera_indices=torch.randint(0, 4, (n, 1), generator=g),
                     metadata={"directions_norm": torch.ones(n, 1)})


@pytest.mark.parametrize("mode", ["volume", "surface"])
def test_model_renders_linear_radiance_then_encodes_it(make_model, mode):
    """Same weights, two encodings: every colour output of the sRGB model is scikit-image's encoding of the linear
    model's, and the loss's gradient stays finite, and reaches the light, where the render is nearly black."""
    linear = make_model(mode, seed=3, image_encoding="linear")
    srgb = make_model(mode, seed=3, image_encoding="srgb")
    srgb.load_state_dict(linear.state_dict())
    for model in (linear, srgb):
        with torch.no_grad():
            model.light.coefficients.mul_(0.25)
        model.eval()
    rays = _rays(64, seed=5)
    with torch.no_grad():
        a, b = linear(rays), srgb(rays)
    assert float(a["accumulation"].max()) > 0.1
    for name in ("rgb", "albedo", "diffuse", "specular"):
        np.testing.assert_allclose(b[name].numpy(), _skimage_encode(a[name].double().numpy()), atol=1e-5, err_msg=name)
    for name in ("normal", "depth", "accumulation", "roughness"):
        assert torch.equal(a[name], b[name]), name

    srgb.train()
    with torch.no_grad():
        srgb.light.coefficients.mul_(1e-4)  # a nearly black render: the encoding's linear toe, its steepest part
    outputs = srgb(_rays(32, seed=6))
    assert 0.0 < float(outputs["rgb"].max()) < 0.0404  # below the break point
    loss = sum(srgb.get_loss_dict(outputs, {"image": torch.zeros(32, 3), "fg_mask": torch.ones(32, 1)}).values())
    loss.backward()
    for name, p in srgb.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert float(srgb.light.coefficients.grad.abs().sum()) > 0  # a dark image still teaches the light
