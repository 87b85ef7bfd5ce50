"""Batched on-device augmentation: held to the Pillow path, seeded, photometric ops, used by the trainer."""

import numpy as np
import pytest
import torch

from shapekit.data import augment as A
from shapekit.data.prepare import PreparedDataset, prepare
from shapekit.errors import ShapekitError
from shapekit.train.batched import BatchedAugment, DeviceCache, gaussian_blur, warp_batch


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from shapekit.data.synth import write_dataset

    root = tmp_path_factory.mktemp("batched")
    write_dataset(root / "faces", 6, seed=3, size=160, progress=False)
    prepare(root / "faces", root / "prep", size=64, progress=False)
    return root / "prep"


def _geometric(seed=5):
    return A.Compose([A.RandomSimilarity(p=1.0, rotation=25, scale=0.2, translation=0.05), A.RandomFlip(p=0.5)],
                     seed=seed)


def test_same_transform_as_the_pillow_path(cache):
    """Given the Pillow path's drawn matrix: landmarks agree exactly, pixels within interpolation error."""
    aug = _geometric()
    ds = PreparedDataset(cache, augment=aug)
    dc = DeviceCache.from_dataset(ds)
    n_flipped = 0
    for i in range(len(ds)):
        item = ds[i]
        g = aug.geometry(aug.rng(i, 0), ds.size, schema=ds.schema, n_points=ds.shapes.shape[1])
        flipped = torch.tensor([g.permutation is not None])
        n_flipped += int(flipped)
        img, pts, mask, _ = dc.render(torch.tensor([i]), torch.as_tensor(g.matrix)[None].float(), flipped)
        m = item["mask"].numpy()
        assert np.array_equal(mask[0].numpy(), m)
        np.testing.assert_allclose(pts[0].numpy()[m], item["shape"].numpy()[m], atol=2e-3)
        diff = np.abs(img[0].numpy() - item["image"].numpy())
        inner = diff[:, 2:-2, 2:-2]  # Pillow and grid_sample treat the last half pixel at the cache edge apart
        assert inner.mean() < 1 / 255, inner.mean()  # Pillow rounds to uint8: 0.5/255 on average
        assert np.quantile(inner, 0.99) < 2 / 255
    assert 0 < n_flipped < len(ds)


def test_resized_output_keeps_the_geometry(cache):
    """Rendering at another side (the network input) scales landmarks exactly and images by resampling."""
    ds = PreparedDataset(cache)
    small = DeviceCache.from_dataset(ds, out_size=32, augment=None)
    full = DeviceCache.from_dataset(ds, augment=None)
    idx = torch.arange(len(ds))
    a_img, a_pts, a_mask, _ = small.render(idx)
    b_img, b_pts, b_mask, _ = full.render(idx)
    assert a_img.shape[-1] == 32 and b_img.shape[-1] == 64
    m = b_mask
    np.testing.assert_allclose(((a_pts + 0.5) * 2 - 0.5)[m].numpy(), b_pts[m].numpy(), atol=1e-3)
    # centre crop without augmentation is the cached slice
    np.testing.assert_allclose(b_img.numpy(), np.stack([ds[i]["image"].numpy() for i in range(len(ds))]), atol=1e-5)
    down = torch.nn.functional.interpolate(b_img, size=(32, 32), mode="bilinear", antialias=True)
    assert (a_img - down).abs().mean() < 3 / 255


def test_same_seed_epoch_step_same_batch_and_draws_differ(cache):
    aug = A.default_augmentation(seed=1)
    dc = DeviceCache.from_dataset(PreparedDataset(cache, augment=aug))
    idx = torch.arange(len(dc))
    a = dc.batch(idx, epoch=2, step=1)
    b = dc.batch(idx, epoch=2, step=1)
    c = dc.batch(idx, epoch=3, step=1)
    for x, y in zip(a, b):
        if x is not None:
            assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert a[0].min() >= 0 and a[0].max() <= 1


def test_flip_reindexes_points_by_the_schema():
    """A mirrored batch puts the left eye's corner where the right one was."""
    from shapekit import schemas

    s = schemas.get("ibug68")
    rng = np.random.default_rng(0)
    shapes = rng.uniform(10, 30, size=(2, 68, 2))
    images = np.zeros((2, 40, 40, 3), dtype=np.uint8)
    aug = A.Compose([A.RandomFlip(p=1.0, schema=s.name)], seed=0)
    dc = DeviceCache(images, shapes, np.ones((2, 68), bool), None, 40, 40, 40, schema=s.name, augment=aug)
    _, pts, _, _ = dc.batch(torch.arange(2))
    flip = np.asarray(s.flip)
    expect = shapes[:, flip].copy()
    expect[..., 0] = 39 - expect[..., 0]
    np.testing.assert_allclose(pts.numpy(), expect, atol=1e-4)


def test_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 20, 20)).astype(np.float32)
    sig = np.array([0.7, 1.4])
    got = gaussian_blur(torch.from_numpy(x), torch.from_numpy(sig)).numpy()
    for k in range(2):
        ref = gaussian_filter(x[k], sigma=(0, sig[k], sig[k]), mode="nearest", truncate=3.0)
        np.testing.assert_allclose(got[k], ref, atol=1e-5)


@pytest.mark.parametrize("radius", [1, 3, 5, 7])
def test_cpu_blur_equals_the_convolution_form(radius):
    from shapekit.train.batched import _gaussian_blur_conv

    g = torch.Generator().manual_seed(radius)
    x = torch.rand(3, 3, 17, 23, generator=g)
    sig = torch.rand(3, generator=g) * (radius / 3.0) + 0.2
    torch.testing.assert_close(gaussian_blur(x, sig, radius), _gaussian_blur_conv(x, sig, radius), atol=1e-6, rtol=0)


def test_gamma_is_the_power_of_the_clipped_values():
    x = torch.rand(6, 3, 9, 9, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2  # outside [0, 1] too
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, -0.1])
    aug = BatchedAugment(A.Compose([A.Gamma(p=1, gamma=(0.6, 1.6))], seed=0))
    y = aug.photometric_ops(x.clone(), torch.Generator().manual_seed(4))
    # the drawn exponents: the coin comes first, then one log-uniform draw per image
    g = torch.Generator().manual_seed(4)
    torch.rand(6, generator=g)
    gam = torch.exp(torch.rand(6, generator=g) * (np.log(1.6) - np.log(0.6)) + np.log(0.6))
    ref = x.clamp(0, 1) ** gam.view(-1, 1, 1, 1)
    torch.testing.assert_close(y, ref, atol=2e-6, rtol=1e-5)


def test_unchosen_images_stay_unchanged_on_both_paths():
    """The device path computes every image; an operation working in place must not reach the unchosen ones."""
    from shapekit.train.batched import _on_chosen, _where_chosen

    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    on = torch.tensor([True, False, True, False, False, True])
    g = torch.linspace(0.5, 2.0, 6)
    for path in (_on_chosen, _where_chosen):
        y = path(x.clone(), on, lambda v, gv: v.clamp_(1e-20, 1.0).log_().mul_(gv.view(-1, 1, 1, 1)).exp_(), g)
        assert torch.equal(y[~on], x[~on])
        torch.testing.assert_close(y[on], x[on] ** g[on].view(-1, 1, 1, 1))


def test_cpu_noise_is_normal_per_image_reproducible_and_differs_between_images():
    x = torch.full((8, 3, 64, 64), 0.5)
    aug = BatchedAugment(A.Compose([A.GaussianNoise(p=1, sigma=(0.05, 0.05))], seed=0))
    y = aug.photometric_ops(x.clone(), torch.Generator().manual_seed(2)) - 0.5
    again = aug.photometric_ops(x.clone(), torch.Generator().manual_seed(2)) - 0.5
    assert torch.equal(y, again)
    for k in range(8):
        v = y[k].flatten().double()
        assert abs(float(v.mean())) < 0.003 and abs(float(v.std()) - 0.05) < 0.003
        # neighbouring pixels are independent draws
        assert abs(float(torch.corrcoef(torch.stack([y[k, :, :, :-1].flatten(), y[k, :, :, 1:].flatten()]))[0, 1])) < 0.05
    flat = y.flatten(1)
    corr = torch.corrcoef(flat)
    assert float((corr - torch.eye(8)).abs().max()) < 0.1  # no two images share a noise window
    other = aug.photometric_ops(x.clone(), torch.Generator().manual_seed(3)) - 0.5
    assert not torch.equal(y, other)


@pytest.mark.parametrize("op", [A.Brightness(p=1, delta=0.2), A.Contrast(p=1), A.Gamma(p=1), A.ToGrey(p=1),
                                A.GaussianNoise(p=1, sigma=(0.05, 0.1)), A.Blur(p=1),
                                A.Occlusion(p=1, fill="random")])
def test_each_photometric_op_acts_and_off_is_identity(op):
    x = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    on = BatchedAugment(A.Compose([op], seed=0))
    y = on.photometric_ops(x.clone(), torch.Generator().manual_seed(1))
    assert not torch.allclose(y, x)
    op.p = 0.0
    z = BatchedAugment(A.Compose([op], seed=0)).photometric_ops(x.clone(), torch.Generator().manual_seed(1))
    assert torch.allclose(z, x)
    if isinstance(op, A.ToGrey):
        assert torch.allclose(y[:, 0], y[:, 1])


def test_warp_identity_and_errors(cache):
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = warp_batch(x, torch.eye(3).repeat(2, 1, 1), 16)
    assert torch.allclose(out, x.float() / 255, atol=1e-6)
    with pytest.raises(ShapekitError, match="not a prepared cache"):
        DeviceCache.from_dataset(torch.utils.data.TensorDataset(torch.zeros(2)))


def test_cpu_kernel_equals_grid_sample():
    from shapekit.train.batched import warp_cached

    g = torch.Generator().manual_seed(0)
    cache = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8, generator=g)
    index = torch.tensor([3, 0, 3, 1])
    ang = torch.rand(4, generator=g)
    m = torch.eye(3).repeat(4, 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = torch.cos(ang) * 1.3, -torch.sin(ang), torch.sin(ang), torch.cos(ang)
    m[:, :2, 2] = torch.rand(4, 2, generator=g) * 8 - 2  # partly outside: zeros there
    far = m.clone()
    far[:, :2, 2] = torch.tensor([[-30.0, 3.0], [25.0, -4.0], [-9.0, -9.0], [12.0, 14.0]])  # mostly or all outside
    for mats in (m, far):
        for scale in (1.0, 1.5):
            got = warp_cached(cache, index, mats, 16, cache_scale=scale)
            ref = warp_batch(cache[index], mats, 16, cache_scale=scale)
            torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)


def _batched_cfg(**kw):
    from shapekit.train import TrainConfig

    base = dict(model="simple_cnn", model_kwargs={"channels": (4, 8)}, epochs=3, batch_size=2, lr=3e-3, norm="box",
                warmup_epochs=0.5, progress=False, batched=True, input_size=32)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_batched_path_resumes_exactly(cache, tmp_path):
    """A run killed mid-epoch and resumed ends with the weights of the uninterrupted run."""
    from shapekit.train import StopTraining, fit_role, load_checkpoint
    from shapekit.train.data import load_training_data

    train, val = load_training_data([cache], val_fraction=0.34, seed=0)
    cfg = _batched_cfg(ema=True)
    full = fit_role("plain", train, val, cfg, out=tmp_path / "full")
    assert np.isfinite(full.best_nme) and len(full.history) == 3

    def kill(trainer, epoch, step):
        if epoch == 1 and step == 0:
            raise StopTraining

    with pytest.raises(StopTraining):
        fit_role("plain", train, val, cfg, out=tmp_path / "cut", step_callback=kill)
    fit_role("plain", train, val, cfg, out=tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    for k in a["train_model"]:
        assert torch.equal(a["train_model"][k], b["train_model"][k]), k
    assert a["history"][-1]["val_nme"] == b["history"][-1]["val_nme"]


def test_trainer_batched_needs_prepared_caches(tmp_path):
    from shapekit.train import fit_role
    from test_train_fixtures import BlobDataset

    with pytest.raises(ShapekitError, match="not a prepared cache"):
        fit_role("plain", BlobDataset(8, seed=0), None, _batched_cfg(input_size=None))


def test_cli_train_batched_tolerant(cache, tmp_path, capsys):
    """`shapekit train --batched`: the tolerant teacher's soft targets come from the fitted shape model."""
    import json

    from shapekit_cli.main import main

    out = tmp_path / "tol"
    code = main(["train", "--role", "tolerant", "--data", str(cache), "--out", str(out), "--model", "simple_cnn",
                 "--input-size", "32", "--epochs", "1", "--batch-size", "2", "--batched", "--threads", "1",
                 "--val-fraction", "0.34", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["role"] == "tolerant" and np.isfinite(summary["best_nme"])
    assert (out / "soft_model.npz").is_file() and (out / "best.pt").is_file()
    from shapekit.train import load_checkpoint

    assert load_checkpoint(out / "best.pt")["config"]["batched"] is True


def test_from_dataset_keeps_the_order_of_subsets_and_concats(cache):
    from shapekit.train.data import Concat, Subset

    ds = PreparedDataset(cache)
    mixed = Subset(Concat([ds, ds]), [7, 0, 11, 3, 5])
    dc = DeviceCache.from_dataset(mixed, augment=None)
    _, pts, mask, _ = dc.render(torch.arange(len(mixed)))
    for k in range(len(mixed)):
        item = mixed[k]
        m = item["mask"].numpy()
        np.testing.assert_allclose(pts[k].numpy()[m], item["shape"].numpy()[m], atol=1e-4)
