"""LandmarkDataset items, real-data acceptance (read, crop consistently, map back), split_indices."""

import numpy as np
import pytest
import torch

from shapekit.data import crops
from shapekit.data.augment import default_augmentation
from shapekit.data.datasets import LandmarkDataset, group_key, split_indices
from shapekit.errors import ShapekitError

KEYS = {"image", "shape", "mask", "transform", "index"}


def _toy(n=6, size=(90, 120), seed=0):
    rng = np.random.default_rng(seed)
    images = (rng.random((n, *size, 3)) * 255).astype(np.uint8)
    shapes = np.stack([np.column_stack([rng.uniform(30, 90, 5), rng.uniform(20, 70, 5)]) for _ in range(n)])
    return images, shapes


def test_item_contract_types_and_shapes():
    images, shapes = _toy()
    shapes[2, 3] = np.nan
    ds = LandmarkDataset(images, shapes, size=48, soft=shapes + 0.5)
    item = ds[2]
    assert set(item) == KEYS | {"soft"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 48, 48)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["shape"].dtype == torch.float32 and item["shape"].shape == (5, 2)
    assert item["mask"].dtype == torch.bool and item["mask"].tolist() == [True, True, True, False, True]
    assert item["shape"][3].tolist() == [0.0, 0.0]  # missing point: 0 where the mask is False
    assert item["transform"].dtype == torch.float64 and item["transform"].shape == (3, 3)
    assert item["index"].dtype == torch.int64 and int(item["index"]) == 2
    back = crops.to_original(item["shape"].double(), item["transform"])
    np.testing.assert_allclose(back[item["mask"].numpy()], shapes[2][item["mask"].numpy()], atol=1e-3)
    soft_back = crops.to_original(item["soft"].double(), item["transform"])
    m = item["mask"].numpy()
    np.testing.assert_allclose(soft_back[m], shapes[2][m] + 0.5, atol=1e-3)


def test_grey_image_crop_and_callable_crop():
    images, shapes = _toy()
    grey = LandmarkDataset(images, shapes, size=32, grey=True, crop="image")
    item = grey[0]
    assert item["image"].shape == (1, 32, 32)
    # the whole 90x120 image is fitted: x spans the crop, y is centred
    np.testing.assert_allclose(crops.to_original([[-0.5, 15.5], [31.5, 15.5]], item["transform"].numpy()),
                               [[-0.5, 44.5], [119.5, 44.5]])
    fixed = LandmarkDataset(images, shapes, size=32, crop=lambda img, pts: (60.0, 45.0, 64.0))
    np.testing.assert_allclose(crops.to_original([[15.5, 15.5]], fixed[1]["transform"].numpy()), [[60.0, 45.0]])


def test_default_collate_with_two_workers_and_seeded_augmentation():
    images, shapes = _toy(8)
    ds = LandmarkDataset(images, shapes, size=32, augment=default_augmentation(schema="mtfl5", seed=5))
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(dl)
    assert batches[0]["image"].shape == (4, 3, 32, 32) and batches[1]["transform"].shape == (4, 3, 3)
    # the same item comes out the same in the main process (seed, epoch, index), and changes with the epoch
    again = ds[5]
    torch.testing.assert_close(batches[1]["image"][1], again["image"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["image"], again["image"])


def test_bad_input_is_named():
    images, shapes = _toy()
    with pytest.raises(ShapekitError, match="images"):
        LandmarkDataset(images[:3], shapes)
    with pytest.raises(ShapekitError, match="shapes"):
        LandmarkDataset(images, shapes[..., 0])
    bad = shapes.copy()
    bad[1] = np.nan
    with pytest.raises(ShapekitError, match="no present point"):
        LandmarkDataset(images, bad)
    with pytest.raises(ShapekitError, match="crop"):
        LandmarkDataset(images, shapes, crop="face")


# --- real data ------------------------------------------------------------------------------

def _check_dataset(ds, ann, indices):
    """Every item: the landmark box is centred in the crop at 1/scale of it; back to original within 0.5 px."""
    size = ds.size
    worst = 0.0
    for i in indices:
        item = ds[int(i)]
        assert item["image"].shape == (3, size, size)
        m = item["mask"].numpy()
        pts = item["shape"].double().numpy()
        box = crops.landmark_box(pts[m])
        np.testing.assert_allclose(0.5 * (box[:2] + box[2:]), (size - 1) / 2, atol=1e-3)
        np.testing.assert_allclose(max(box[2] - box[0], box[3] - box[1]), size / ds.scale, rtol=1e-5)
        back = crops.to_original(pts, item["transform"])
        err = np.abs(back[m] - ann.shapes[i][m]).max()
        worst = max(worst, err)
        assert err < 0.5
        # the crop is an image (not blank): the face region has texture
        assert float(item["image"].std()) > 0.02
    return worst


DATASETS = ["lfpw68/train", "helen68/train", "afw68/train", "mtfl5/new_training.txt"]


@pytest.mark.parametrize("name", DATASETS)
def test_real_data_subset_crops_consistently_and_maps_back(shared_data, name):
    from shapekit.io import read

    ann = read(shared_data(name))
    ds = LandmarkDataset.from_annotations(ann, size=64)
    assert len(ds) == len(ann) and ds.schema in ("ibug68", "mtfl5")
    idx = np.random.default_rng(0).choice(len(ds), 12, replace=False)
    assert _check_dataset(ds, ann, idx) < 0.5
    # augmented items map back too (points re-indexed when flipped: compare as sets via the permutation)
    ds.augment = default_augmentation(seed=0)
    for i in idx[:4]:
        item = ds[int(i)]
        g = ds.augment.geometry(ds.augment.rng(int(i), 0), 64, schema=ds.schema, n_points=ann.shapes.shape[1])
        perm = g.permutation if g.permutation is not None else np.arange(ann.shapes.shape[1])
        back = crops.to_original(item["shape"].double(), item["transform"])
        m = item["mask"].numpy()
        assert np.abs(back[m] - ann.shapes[i][perm][m]).max() < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", DATASETS)
def test_real_data_every_sample(shared_data, name):
    from shapekit.io import read

    ann = read(shared_data(name))
    ds = LandmarkDataset.from_annotations(ann, size=64)
    assert _check_dataset(ds, ann, range(len(ds))) < 0.5


def test_afw_split_keeps_photos_together(shared_data):
    from shapekit.io import read

    names = [m["name"] for m in read(shared_data("afw68/train")).meta]
    train, val = split_indices(names, 0.2, seed=0)
    assert len(set(train) | set(val)) == len(names) and not set(train) & set(val)
    assert abs(len(val) - 0.2 * len(names)) <= 3
    photos_t = {group_key(names[i]) for i in train}
    photos_v = {group_key(names[i]) for i in val}
    assert not photos_t & photos_v
    # fixed by the seed, different for another seed
    np.testing.assert_array_equal(split_indices(names, 0.2, seed=0)[1], val)
    assert not np.array_equal(split_indices(names, 0.2, seed=1)[1], val)


def test_group_keys_and_split_options():
    assert group_key("1051618982_2") == group_key("/x/1051618982_1.jpg") == "1051618982"
    assert group_key("image_0001") == "image_0001"  # LFPW names are not photo ids
    assert group_key("i000qa-fn") == group_key("ir000qa-fn")
    names = [f"{p}_{k}" for p in range(100, 140) for k in range(1, 3)] + ["i001qa-fn", "ir001qa-fn"]
    tr, va = split_indices(names, 0.25, seed=3)
    keys_v = {group_key(names[i]) for i in va}
    assert not keys_v & {group_key(names[i]) for i in tr}
    tr2, va2 = split_indices(names, 0.25, seed=3, group=None)
    assert len(va2) == round(0.25 * len(names))
    tr3, va3 = split_indices(names, 0.0)
    assert len(va3) == 0 and len(tr3) == len(names)
    with pytest.raises(ShapekitError, match="val_fraction"):
        split_indices(names, 1.0)


def test_detector_crops_scale_the_corrected_square_and_fall_back_to_landmarks():
    class Fixed:
        def __init__(self, square):
            self.square = square

        def face_square(self, image):
            return self.square

    images, shapes = _toy(3)
    ds = LandmarkDataset(images, shapes, size=40, crop="detector", detector=Fixed(np.array([60.0, 45.0, 50.0])),
                         scale=1.2)
    t = ds[0]["transform"].numpy()
    # the crop is the detector square enlarged by the dataset's scale, like a landmark crop
    np.testing.assert_allclose(crops.to_original([[-0.5, -0.5], [39.5, 39.5]], t), [[30, 15], [90, 75]])
    none = LandmarkDataset(images, shapes, size=40, crop="detector", detector=Fixed(None), scale=1.2)
    np.testing.assert_allclose(none[1]["transform"].numpy(), crops.landmark_crop_transform(shapes[1], 40, 1.2))
    assert none.detector_fallbacks == [1]


def test_kaggle_csv_whole_image_crops_with_missing_points_masked(tmp_path):
    from shapekit.io.kaggle import write_kaggle

    rng = np.random.default_rng(0)
    # 15 plausible points inside a 96x96 face image; two points missing in sample 1
    shapes = rng.uniform(20, 76, (3, 15, 2))
    shapes[1, [4, 9]] = np.nan
    images = (rng.random((3, 96, 96)) * 255).astype(np.uint8)
    write_kaggle(tmp_path / "training.csv", shapes, images)
    ds = LandmarkDataset.from_source(tmp_path / "training.csv", size=96, grey=True)
    assert ds.crop == "image" and ds.schema == "kaggle15"
    item = ds[1]
    assert item["image"].shape == (1, 96, 96)
    np.testing.assert_allclose(item["image"][0].numpy(), images[1] / 255.0, atol=1e-6)  # identity crop
    assert (~item["mask"]).nonzero().flatten().tolist() == [4, 9]
    np.testing.assert_allclose(item["shape"][item["mask"]].numpy(), shapes[1][item["mask"].numpy()], atol=1e-4)


def test_wflw_file_with_image_folder_and_two_faces_in_one_photo(tmp_path):
    from PIL import Image

    from shapekit.io.wflw import write_wflw

    rng = np.random.default_rng(0)
    folder = tmp_path / "WFLW_images" / "1--Handshaking"
    folder.mkdir(parents=True)
    for k in range(2):
        Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(folder / f"photo{k}.jpg")
    names = ["1--Handshaking/photo0.jpg", "1--Handshaking/photo0.jpg", "1--Handshaking/photo1.jpg"]
    shapes = np.stack([np.column_stack([rng.uniform(x0, x0 + 40, 98), rng.uniform(30, 80, 98)])
                       for x0 in (10, 90, 50)])
    ann_dir = tmp_path / "WFLW_annotations"
    ann_dir.mkdir()
    write_wflw(ann_dir / "list_98pt_train.txt", shapes, names)
    ds = LandmarkDataset.from_source(ann_dir / "list_98pt_train.txt", size=48,
                                     augment=default_augmentation(seed=0))
    assert ds.schema == "wflw98" and len(ds) == 3
    for i in range(3):
        item = ds[i]
        g = ds.augment.geometry(ds.augment.rng(i, 0), 48, schema="wflw98", n_points=98)
        perm = g.permutation if g.permutation is not None else np.arange(98)
        np.testing.assert_allclose(crops.to_original(item["shape"].double(), item["transform"]), shapes[i][perm],
                                   atol=1e-3)
    # the two faces of photo0 never end up on both sides of a split
    for seed in range(5):
        tr, va = split_indices(ds.names, 0.34, seed=seed)
        assert {0, 1} <= set(tr) or {0, 1} <= set(va)
