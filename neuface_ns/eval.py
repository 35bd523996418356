"""Image metrics: nerfstudio's whole-image PSNR / SSIM and NeuFace's masked, colour-fitted
protocol (docs/method.md section 6).

Protocol, per held-out image. The model renders held-out views with one fixed photometric
calibration latent, chosen by ``--pipeline.model.eval-latent``: ``mean`` (default, the mean of the
training images' latents) or the index of one training image (e.g. ``0``), as in
``ns-eval --load-config <config.yml> --output-path metrics.json`` after training with that option,
or by editing ``eval_latent`` in the run's config.yml. Then:

1. fit one least-squares 3x3 colour matrix M from prediction to ground truth over the pixels
   inside the ground-truth mask (``pred @ M ~ gt``), apply it to the whole prediction, clamp to
   [0, 1];
2. ``psnr_masked``: PSNR with the MSE averaged over mask pixels (and channels) only;
3. ``ssim_masked``: SSIM of the colour-fitted prediction and the ground truth, both multiplied by
   the mask (black outside);
4. ``lpips_masked``: LPIPS (AlexNet trunk, linear layers v0.1, the ``lpips`` package) of the same
   two masked images.

LPIPS needs torchvision's ImageNet AlexNet weights, ``alexnet-owt-7be5be79.pth`` in the torch hub
cache (``torch.hub.get_dir()/checkpoints``), and the lpips package's own linear layers (shipped in
the wheel, ``lpips/weights/v0.1/alex.pth``). Nothing is downloaded: the network is built with a
random trunk and both state dicts are loaded from those paths. When a file is absent,
``lpips_masked`` is left out of the results and one line (printed once per process) says which file
is missing and where to put it.

Two protocols (``--pipeline.model.eval-ssim`` / ``--pipeline.model.eval-mask``, or ``neuface-eval
--protocol``, see ``neuface_ns/evaluate_cli.py``):

* ``neuface-ns`` (the default, used by ``ns-eval``): the steps above: ssim mode ``masked-image``,
  mask ``gt``, latent ``eval_latent`` (``mean`` by default).
* ``reference``: what NeuFace's own evaluation scripts do (aejion/NeuFace, ``scripts/eval_pl.py``
  for FaceScape, ``common_object/evaluation/eval.py`` for DTU). The calibration latent of one
  fixed training image (index 6 for FaceScape, 4 for DTU); the same colour fit, PSNR over the mask
  pixels; SSIM (``ssim_mode="pixel-list"``) of the list of mask pixels, a [P, 3] array, by
  scikit-image's ``structural_similarity(..., multichannel=True)`` without ``data_range``: each
  channel is a 1-D signal of P values in row-major pixel order, a uniform 7-sample window, sample
  covariance, K1 = 0.01, K2 = 0.03, the 3 samples at either end cropped, the three channel means
  averaged, and, because the arrays are float and scikit-image before 0.20 took the data range
  of a float dtype as 1 - (-1), data_range = 2 (scikit-image 0.20 and later refuse that call).
  FaceScape uses the ground-truth mask; DTU uses the network's mask (``mask="predicted"``: the
  rays whose sphere tracing hit the surface; here accumulation > 0.5, which in surface mode is
  exactly the hit rays) for the colour fit, PSNR and SSIM alike, and never looks at the
  ground-truth mask. The reference computes no LPIPS; ``lpips_masked`` is still reported, on the
  colour-fitted images multiplied by the chosen mask. One difference remains: the reference fits its
  network's unclipped colours, this code the model's ``rgb``, already clamped to [0, 1].
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

MAX_PSNR = 100.0  # a perfect fit has MSE 0; report this cap instead of infinity

SsimMode = Literal["masked-image", "pixel-list"]
MaskMode = Literal["gt", "predicted"]
SSIM_MODES: Tuple[str, ...] = ("masked-image", "pixel-list")
MASK_MODES: Tuple[str, ...] = ("gt", "predicted")
PROTOCOLS: Tuple[str, ...] = ("neuface-ns", "reference")

REFERENCE_LATENT = {"facescape": 6, "dtu": 4}
"""The training image whose calibration latent NeuFace's scripts render held-out views with."""
REFERENCE_MASK = {"facescape": "gt", "dtu": "predicted"}
"""The mask NeuFace's scripts fit, score PSNR and SSIM over."""
REFERENCE_SSIM_WINDOW = 7
REFERENCE_SSIM_DATA_RANGE = 2.0
"""scikit-image < 0.20's data range for float arrays when none is given (dtype range -1..1)."""

ALEXNET_WEIGHTS_NAME = "alexnet-owt-7be5be79.pth"
"""torchvision's ImageNet AlexNet (IMAGENET1K_V1) checkpoint, the LPIPS v0.1 trunk."""

# AlexNet `features` layers that hold weights, and the lpips slice each one lives in.
_ALEXNET_CONV_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def fit_color_matrix(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """3x3 M minimising |predicted @ M - target|^2 over the given pixels [P, 3]."""
    solution = torch.linalg.lstsq(predicted.double().cpu(), target.double().cpu()).solution
    return solution.to(device=predicted.device, dtype=predicted.dtype)


def psnr_from_mse(mse: torch.Tensor) -> float:
    if float(mse) <= 10 ** (-MAX_PSNR / 10):
        return MAX_PSNR
    return float(-10.0 * torch.log10(mse))


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two [H, W, 3] images in [0, 1]: the standard Gaussian window (sigma 1.5, 11 x 11);
    images smaller than 6 pixels, which it cannot pad, use a uniform window that fits."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    smallest = min(a.shape[0], a.shape[1])
    if smallest >= 6:
        return float(structural_similarity_index_measure(x, y, data_range=1.0))
    kernel = 2 * smallest - 1
    return float(structural_similarity_index_measure(x, y, data_range=1.0, gaussian_kernel=False, kernel_size=kernel))


def ssim_pixel_list(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """NeuFace's reference SSIM: of the [P, 3] lists of the pixels of a and b ([H, W, 3]) inside mask
    ([H, W, 1] bool), row-major, each channel a 1-D signal; uniform window of 7, sample covariance,
    data_range 2 (see the module docstring); mean over the positions whose window lies inside the list
    and over the channels. NaN when the mask has fewer than 7 pixels (the reference's call fails there)."""
    m = mask.reshape(-1)
    x = a.reshape(-1, 3)[m].double().T[:, None]  # [3, 1, P]
    y = b.reshape(-1, 3)[m].double().T[:, None]
    w = REFERENCE_SSIM_WINDOW
    if x.shape[-1] < w:
        return float("nan")
    kernel = torch.full((1, 1, w), 1.0 / w, dtype=torch.float64, device=x.device)
    mean = lambda v: torch.nn.functional.conv1d(v, kernel)  # noqa: E731 - valid windows only = skimage's crop
    ux, uy = mean(x), mean(y)
    cov_norm = w / (w - 1)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1 = (0.01 * REFERENCE_SSIM_DATA_RANGE) ** 2
    c2 = (0.03 * REFERENCE_SSIM_DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def predicted_mask(accumulation: torch.Tensor) -> torch.Tensor:
    """The network's own mask, [H, W, 1] bool: accumulation > 0.5 (surface mode: the rays that hit)."""
    return torch.nan_to_num(accumulation.reshape(*accumulation.shape[:2], 1), nan=0.0) > 0.5


def protocol_name(ssim_mode: str, mask_mode: str) -> str:
    """"neuface-ns" (masked-image SSIM, ground-truth mask), "reference" (pixel-list SSIM) or "custom"."""
    if ssim_mode == "masked-image" and mask_mode == "gt":
        return "neuface-ns"
    if ssim_mode == "pixel-list":
        return "reference"
    return "custom"


def describe_protocol(latent: str, ssim_mode: str, mask_mode: str, name: Optional[str] = None) -> str:
    """One line naming the protocol (by default `protocol_name`) and its three choices."""
    name = name or protocol_name(ssim_mode, mask_mode)
    latent_text = "mean of the training latents" if latent == "mean" else f"training image {latent}"
    return (
        f"protocol {name}: calibration latent {latent_text}; colour fit and psnr_masked over the "
        f"{'ground-truth' if mask_mode == 'gt' else 'predicted'} mask; ssim_masked "
        f"{'on the masked images' if ssim_mode == 'masked-image' else 'over the list of mask pixels'}"
    )


# ---------------------------------------------------------------------------------------------------- LPIPS


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the AlexNet backbone weights (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_NAME


def lpips_linear_weights_path() -> Optional[Path]:
    """The lpips package's own v0.1 AlexNet linear layers (shipped inside the package)."""
    try:
        import lpips
    except ImportError:
        return None
    return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


# One LPIPS network per backbone path (None: unavailable); the reason is printed once per path.
_LPIPS_CACHE: Dict[str, Optional[torch.nn.Module]] = {}


def reset_lpips_cache() -> None:
    """Forget the constructed network (tests switch hub directories)."""
    _LPIPS_CACHE.clear()


def _build_lpips(backbone_path: Path) -> Tuple[Optional[torch.nn.Module], Optional[str]]:
    """(network, None) or (None, one-line reason). Never downloads anything."""
    linear_path = lpips_linear_weights_path()
    if linear_path is None:
        return None, "lpips_masked not computed: the 'lpips' package is not installed (pip install lpips)"
    if not linear_path.is_file():
        return None, f"lpips_masked not computed: missing the lpips package's linear layers {linear_path} (reinstall lpips)"
    if not backbone_path.is_file():
        return None, (
            f"lpips_masked not computed: missing AlexNet weights {backbone_path.name}; put torchvision's "
            f"{ALEXNET_WEIGHTS_NAME} (download.pytorch.org/models/{ALEXNET_WEIGHTS_NAME}) at {backbone_path}"
        )
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" (random trunk: nothing fetched)
        # pretrained=False: lpips reads no file itself; pnet_rand=True: torchvision downloads nothing.
        network = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    try:
        trunk = torch.load(backbone_path, map_location="cpu", weights_only=True)
        linear = torch.load(linear_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file must not stop the evaluation
        return None, f"lpips_masked not computed: cannot read {backbone_path} or {linear_path}: {err}"
    state = {}
    for layer, slice_index in _ALEXNET_CONV_SLICES.items():
        for param in ("weight", "bias"):
            key = f"features.{layer}.{param}"
            if key not in trunk:
                return None, f"lpips_masked not computed: {backbone_path} is not an AlexNet state dict (no {key})"
            state[f"slice{slice_index}.{layer}.{param}"] = trunk[key]
    try:
        network.net.load_state_dict(state, strict=True)
        missing, unexpected = network.load_state_dict(linear, strict=False)
    except RuntimeError as err:
        return None, f"lpips_masked not computed: weights do not fit AlexNet LPIPS: {str(err).splitlines()[0]}"
    expected_linear = {f"lin{i}.model.1.weight" for i in range(5)}
    if unexpected or not expected_linear.issubset(linear.keys()):
        return None, f"lpips_masked not computed: {linear_path} is not the LPIPS v0.1 AlexNet linear layers"
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network, None


def get_lpips(device: torch.device | str = "cpu") -> Optional[torch.nn.Module]:
    """The LPIPS network (built lazily, once), or None when its weights are absent."""
    key = str(alexnet_weights_path())
    if key not in _LPIPS_CACHE:
        network, reason = _build_lpips(Path(key))
        if reason is not None:
            from nerfstudio.utils.rich_utils import CONSOLE

            CONSOLE.print(f"[yellow]neuface-ns: {reason}[/yellow]", soft_wrap=True)
        _LPIPS_CACHE[key] = network
    network = _LPIPS_CACHE[key]
    if network is not None:
        network.to(device)
    return network


def lpips_distance(a: torch.Tensor, b: torch.Tensor) -> Optional[float]:
    """LPIPS (AlexNet, v0.1) of two [H, W, 3] images in [0, 1]; None when the weights are absent."""
    network = get_lpips(a.device)
    if network is None:
        return None
    with torch.no_grad():
        to_input = lambda x: x.permute(2, 0, 1)[None].float().clamp(0.0, 1.0) * 2.0 - 1.0  # noqa: E731
        return float(network(to_input(a), to_input(b)).reshape(()))


# ---------------------------------------------------------------------------------------------------- metrics


def masked_image_metrics(
    predicted: torch.Tensor,
    target: torch.Tensor,
    mask: Optional[torch.Tensor],
    lpips: bool = True,
    ssim_mode: SsimMode = "masked-image",
) -> Dict[str, float]:
    """predicted, target [H, W, 3] in [0, 1]; mask [H, W, 1] bool (or None: whole-image metrics only):
    the mask of the protocol (ground-truth or predicted). ssim_mode: "masked-image" (the project's
    ssim_masked) or "pixel-list" (the reference's, `ssim_pixel_list`).

    Returns psnr, ssim (whole image, no colour fit) and, with a mask, psnr_masked, ssim_masked and
    (when the LPIPS weights are present and `lpips`) lpips_masked. An empty mask gives NaN for the
    masked metrics: the colour fit is undefined there. Non-finite predicted pixels (a broken model's rays) count
    as black: they are left out of the colour fit and scored as misses.
    """
    if ssim_mode not in SSIM_MODES:
        raise ValueError(f"ssim_mode must be one of {SSIM_MODES}, not {ssim_mode!r}")
    predicted = torch.where(torch.isfinite(predicted), predicted, torch.zeros_like(predicted))
    metrics = {
        "psnr": psnr_from_mse(((predicted - target) ** 2).mean()),
        "ssim": _ssim(predicted, target),
    }
    if mask is None:
        return metrics
    if not bool(mask.any()):
        metrics.update(psnr_masked=float("nan"), ssim_masked=float("nan"))
        if lpips and get_lpips(predicted.device) is not None:
            metrics["lpips_masked"] = float("nan")
        return metrics
    fitted, _ = color_fitted(predicted, target, mask)
    m = mask.reshape(-1)
    mse = ((fitted.reshape(-1, 3)[m] - target.reshape(-1, 3)[m]) ** 2).mean()
    maskf = mask.to(predicted.dtype)
    metrics["psnr_masked"] = psnr_from_mse(mse)
    if ssim_mode == "pixel-list":
        metrics["ssim_masked"] = ssim_pixel_list(fitted, target, mask)
    else:
        metrics["ssim_masked"] = _ssim(fitted * maskf, target * maskf)
    if lpips:
        value = lpips_distance(fitted * maskf, target * maskf)
        if value is not None:
            metrics["lpips_masked"] = value
    return metrics


def color_fitted(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(predicted @ M clamped to [0, 1] as [H, W, 3], M [3, 3]) with M fitted over the mask pixels whose
    prediction and target are finite (identity when fewer than 3 such pixels: the fit is undefined)."""
    flat_pred, flat_target = predicted.reshape(-1, 3), target.reshape(-1, 3)
    m = mask.reshape(-1) & torch.isfinite(flat_pred).all(-1) & torch.isfinite(flat_target).all(-1)
    if int(m.sum()) >= 3:
        matrix = fit_color_matrix(flat_pred[m], flat_target[m])
    else:
        matrix = torch.eye(3, device=predicted.device, dtype=predicted.dtype)
    safe_pred = torch.where(torch.isfinite(flat_pred), flat_pred, torch.zeros_like(flat_pred))
    fitted = (safe_pred @ matrix).clamp(0.0, 1.0).reshape(predicted.shape)
    return fitted, matrix
