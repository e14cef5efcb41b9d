"""User data formats (image folders, .npz, IDX, CIFAR-10 batches) and their error messages."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data import load_dataset
from genlab.errors import UserError


def gray(path: Path, value: int, size: tuple[int, int] = (5, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def load(path: Path, **kw: int) -> tuple:
    s = load_dataset(str(path), **kw)
    return s.train, s.test


# ---- folders of images -------------------------------------------------------------------


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    for i in range(4):
        gray(tmp_path / "cat" / f"{i}.png", 0)
        gray(tmp_path / "dog" / f"{i}.png", 255)
    train, test = load(tmp_path)
    assert train.classes == ["cat", "dog"] and train.bins == 256
    assert train.x.shape == (6, 1, 4, 5) and test.x.shape == (2, 1, 4, 5)
    assert sorted(test.y.tolist()) == [0, 1]  # stratified: each class in both parts
    for part in (train, test):  # label 0 images are black (-1), label 1 white (+1)
        assert torch.equal(part.x.flatten(1).mean(1), part.y.float() * 2 - 1)


def test_image_folder_rgb_jpeg_and_unlabelled(tmp_path: Path) -> None:
    gray(tmp_path / "a.png", 51)
    gray(tmp_path / "only" / "b.png", 51)
    Image.new("RGB", (5, 4), (255, 0, 51)).save(tmp_path / "only" / "c.jpg", quality=100)
    gray(tmp_path / ".hidden" / "junk.png", 0, size=(9, 9))
    train, test = load(tmp_path)
    assert train.y is None and train.classes == []  # an image at the root: no labels
    assert train.x.shape[1:] == (3, 4, 5) and len(train) + len(test) == 3
    x = torch.cat([train.x, test.x]).mean(dim=(2, 3))
    assert any(torch.allclose(row, torch.tensor([1.0, -1.0, -0.6]), atol=0.03) for row in x)
    assert sum(torch.allclose(row, torch.full((3,), 51 / 127.5 - 1)) for row in x) == 2


def test_image_folder_16bit_png_keeps_the_high_byte(tmp_path: Path) -> None:
    for i in range(2):
        Image.fromarray(np.array([[0, 256 * 200 + 77], [65535, 256]], np.uint16)).save(
            tmp_path / f"{i}.png"
        )
    train, _ = load(tmp_path)
    levels = (train.x[0, 0] + 1) * 127.5
    assert torch.allclose(levels, torch.tensor([[0.0, 200.0], [255.0, 1.0]]), atol=1e-4)


def test_single_subfolder_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        gray(tmp_path / "imgs" / f"{i}.png", 10 * i)
    train, _ = load(tmp_path)
    assert train.y is None


def test_image_folder_mixed_sizes(tmp_path: Path) -> None:
    gray(tmp_path / "a.png", 0, size=(8, 8))
    gray(tmp_path / "b.png", 255, size=(6, 4))
    with pytest.raises(UserError, match=r"a\.png is 8x8 but .*b\.png is 6x4; pass --image-size N"):
        load(tmp_path)
    train, test = load(tmp_path, image_size=3)
    assert train.x.shape == (1, 1, 3, 3) and test.x.shape == (1, 1, 3, 3)
    assert sorted([train.x.mean().item(), test.x.mean().item()]) == [-1.0, 1.0]


def test_image_folder_bad_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match=f"no PNG or JPEG images found in folder {empty}"):
        load(empty)
    bad = tmp_path / "bad"
    gray(bad / "ok.png", 0)
    (bad / "broken.png").write_bytes(b"this is not a png at all")
    with pytest.raises(UserError, match=r"cannot read image .*broken\.png"):
        load(bad)
    cut = tmp_path / "cut"
    gray(cut / "ok.png", 0, size=(64, 64))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        cut / "t.png"
    )
    (cut / "t.png").write_bytes((cut / "t.png").read_bytes()[:200])
    with pytest.raises(UserError, match=r"cannot read image .*t\.png"):
        load(cut)


# ---- .npz --------------------------------------------------------------------------------


def test_npz_uint8_images_and_labels(tmp_path: Path) -> None:
    x = np.zeros((20, 4, 4), np.uint8)
    x[:, 0, 0] = 255
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    train, test = load(tmp_path / "d.npz")
    assert train.x.shape == (18, 1, 4, 4) and test.x.shape == (2, 1, 4, 4)
    assert train.bins == 256 and train.classes == ["0", "1"] and sorted(test.y.tolist()) == [0, 1]
    assert train.x[:, 0, 0, 0].eq(1).all() and train.x[:, 0, 1, 1].eq(-1).all()


def test_npz_layouts_and_keys(tmp_path: Path) -> None:
    hwc = np.zeros((10, 4, 6, 3), np.uint8)
    hwc[..., 1] = 255  # green channel
    np.savez(tmp_path / "hwc.npz", images=hwc)
    train, _ = load(tmp_path / "hwc.npz")
    assert train.x.shape == (9, 3, 4, 6) and train.y is None
    assert train.x[:, 1].eq(1).all() and train.x[:, 0].eq(-1).all()
    chw = np.linspace(-1, 1, 10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    np.savez(tmp_path / "chw.npz", chw)  # stored as arr_0
    train, test = load(tmp_path / "chw.npz", image_size=4)
    assert train.x.shape == (9, 3, 4, 4) and train.bins == 0
    vec = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float64)
    np.savez(
        tmp_path / "vec.npz",
        data=vec,
        labels=np.repeat([0, 2], 15),
        classes=np.array(["a", "b", "c"]),
    )
    train, test = load(tmp_path / "vec.npz")
    assert train.x.shape == (27, 5) and train.x.dtype == torch.float32 and train.bins == 0
    assert train.classes == ["a", "b", "c"] and sorted(test.y.tolist()) == [0, 0, 2]
    got = torch.cat([train.x, test.x]).double()
    assert torch.allclose(got.sum(0), torch.from_numpy(vec).sum(0), atol=1e-5)
    with pytest.raises(UserError, match=r"--image-size.*drop --image-size"):
        load(tmp_path / "vec.npz", image_size=8)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x": np.array([[0.0, np.nan]] * 4)}, "contains NaN"),
        ({"x": np.zeros((4, 2, 5, 5), np.float32)}, r"unsupported data shape \(4, 2, 5, 5\)"),
        ({"x": np.zeros((4, 1, 2, 2, 2), np.float32)}, r"unsupported data shape \(4, 1, 2, 2, 2\)"),
        ({"x": np.full((4, 1, 2, 2), 3.0)}, r"float images span \[3, 3\].*\[-1, 1\]"),
        ({"x": np.full((4, 3), 300)}, "outside 0..255"),
        ({"x": np.zeros((4, 3)), "y": np.zeros(3)}, r"labels have shape \(3,\)"),
        ({"x": np.zeros((4, 3)), "y": np.array([0, 1, -1, 0])}, "non-negative"),
        ({"z": np.zeros((4, 3))}, r"no array named x, images, data, arr_0 \(found: z\)"),
        ({"x": np.zeros((0, 3))}, "no examples"),
        ({"x": np.array([{"a": 1}] * 4, dtype=object)}, "cannot read"),
    ],
)
def test_npz_bad_inputs(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message) as e:
        load(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(e.value) and "\n" not in str(e.value)


def test_npz_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "g.npz").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match=r"cannot read .*g\.npz"):
        load(tmp_path / "g.npz")


# ---- MNIST IDX -----------------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    raw = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def test_idx_folder_keeps_train_and_test(tmp_path: Path) -> None:
    x = np.arange(12 * 3 * 2, dtype=np.uint8).reshape(12, 3, 2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x[:10])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8) % 3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[10:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1], np.uint8))
    train, test = load(tmp_path)
    assert train.x.shape == (10, 1, 3, 2) and test.x.shape == (2, 1, 3, 2)
    assert train.y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0] and test.classes == ["0", "1", "2"]
    assert torch.equal(test.x, torch.from_numpy(x[10:, None].astype(np.float32)) / 127.5 - 1)


def test_idx_single_file_with_float_data(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 20 * 4, dtype=np.float32).reshape(20, 2, 2)
    f = write_idx(tmp_path / "mine-images-idx3-ubyte", x, code=0x0D)
    write_idx(tmp_path / "mine-labels-idx1-ubyte", np.repeat(np.array([0, 1], np.uint8), 10))
    train, test = load(f)
    assert train.x.shape == (18, 1, 2, 2) and train.bins == 0 and sorted(test.y.tolist()) == [0, 1]
    assert torch.allclose(
        torch.cat([train.x, test.x]).sum(), torch.tensor(float(x.sum())), atol=1e-4
    )


def test_idx_bad_inputs(tmp_path: Path) -> None:
    f = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3), np.uint8))
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(
        UserError, match=rf"IDX file {f} is truncated.*needs 36 data bytes, file has 31"
    ):
        load(tmp_path)
    f.write_bytes(b"\x12\x34\x08\x03" + bytes(40))
    with pytest.raises(UserError, match=rf"{f} is not an IDX file \(bad magic number 0x12340803\)"):
        load(f)
    g = write_idx(tmp_path / "x-images-idx3-ubyte.gz", np.zeros((4, 3, 3), np.uint8))
    g.write_bytes(g.read_bytes()[:15])
    with pytest.raises(UserError, match=rf"cannot read IDX file {g}"):
        load(g)


# ---- CIFAR-10 python batches ---------------------------------------------------------------


def cifar_batch(path: Path, n: int, start: int, protocol: int = 2) -> np.ndarray:
    data = (np.arange(n * 3072) + start).astype(np.uint8).reshape(n, 3072)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": [i % 3 for i in range(n)]}, f, protocol=protocol)
    return data


def test_cifar_folder(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    d1 = cifar_batch(root / "data_batch_1", 4, 0)
    cifar_batch(root / "data_batch_2", 3, 7, protocol=4)
    with open(root / "test_batch", "wb") as f:  # numpy scalar labels and protocol 5 pickles
        pickle.dump(
            {b"data": np.zeros((2, 3072), np.uint8), b"labels": list(np.array([2, 1]))},
            f,
            protocol=5,
        )
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"plane", b"car", b"bird"]}, f, protocol=2)
    train, test = load(tmp_path)
    assert train.x.shape == (7, 3, 32, 32) and test.x.shape == (2, 3, 32, 32)
    assert train.classes == ["plane", "car", "bird"] and test.y.tolist() == [2, 1]
    assert train.y.tolist() == [0, 1, 2, 0, 0, 1, 2]
    red, green = d1[1, :1024].reshape(32, 32), d1[1, 1024:2048].reshape(32, 32)
    assert torch.equal(train.x[1, 0], torch.from_numpy(red.astype(np.float32)) / 127.5 - 1)
    assert torch.equal(train.x[1, 1], torch.from_numpy(green.astype(np.float32)) / 127.5 - 1)
    assert test.x.eq(-1).all()


class Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_cifar_refuses_malicious_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    batch = tmp_path / "data_batch_1"
    with open(batch, "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(UserError, match=rf"refusing to unpickle (posix|nt)\.system from {batch}"):
        load(tmp_path)
    assert not (tmp_path / "pwned").exists()
    batch.write_bytes(pickle.dumps({b"data": np.zeros(3), "x": pytest.raises}))
    with pytest.raises(UserError, match=r"refusing to unpickle .*raises from"):
        load(batch)
    for module, name in [
        ("builtins", "eval"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "_vec_string"),
    ]:
        batch.write_bytes(f"c{module}\n{name}\n(S'1+1'\ntR.".encode())  # calls module.name('1+1')
        with pytest.raises(UserError, match=rf"refusing to unpickle {module}\.{name} from {batch}"):
            load(batch)


def test_cifar_bad_batches(tmp_path: Path) -> None:
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(UserError, match=rf"{batch}: CIFAR-10 data has shape \(2, 100\)"):
        load(tmp_path)
    batch.write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:50]
    )
    with pytest.raises(UserError, match=rf"cannot read CIFAR-10 batch {batch}"):
        load(tmp_path)


# ---- paths ---------------------------------------------------------------------------------


def test_missing_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data path '.*nowhere' does not exist"):
        load(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        UserError, match=r"unsupported data file .*notes\.txt; pass a folder of PNG/JPEG"
    ):
        load(tmp_path / "notes.txt")
