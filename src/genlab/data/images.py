"""Folders of PNG / JPEG images, and resizing image data sets (both with PIL).

A folder whose images all sit in at least two class subfolders is labelled by subfolder name;
anything else is unlabelled. All-grayscale folders give C=1, otherwise every image becomes RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab.data.arrays import images_from_uint8
from genlab.data.dataset import Dataset
from genlab.errors import UserError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"})
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def image_files(folder: Path) -> list[Path]:
    """PNG / JPEG files under ``folder`` (recursive, sorted), skipping hidden files and folders."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit grayscale (PIL modes ``I``/``I;16``) -> ``L`` by keeping the high byte.

    PIL's own conversion clips at 255 instead, which would turn almost every pixel white.
    """
    if not im.mode.startswith("I"):
        return im
    return Image.fromarray((np.clip(np.asarray(im), 0, 65535) >> 8).astype(np.uint8))


def _unreadable(file: Path, err: Exception) -> UserError:
    reason = " ".join(str(err).split()) or type(err).__name__
    return UserError(f"cannot read image {file}: {reason}; remove or replace the file")


def load_image_folder(folder: Path, image_size: int | None = None) -> Dataset:
    """All images under ``folder`` as one data set, resized to ``image_size`` squares if given."""
    files = image_files(folder)
    if not files:
        raise UserError(
            f"no PNG or JPEG images found in folder {folder}; "
            "add images (optionally one subfolder per class)"
        )
    sizes, gray = [], True
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
                gray = gray and im.mode in _GRAY_MODES
        except _PIL_ERRORS as e:
            raise _unreadable(f, e) from None
    if image_size is None:
        odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
        if odd is not None:
            (w0, h0), (w1, h1) = sizes[0], sizes[odd]
            raise UserError(
                f"images have different sizes: {files[0]} is {w0}x{h0} but {files[odd]} is "
                f"{w1}x{h1}; pass --image-size N to resize them all to NxN"
            )
        w, h = sizes[0]
    else:
        w = h = image_size
    mode, c = ("L", 1) if gray else ("RGB", 3)
    out = np.empty((len(files), h, w, c), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = _to_8bit(im).convert(mode)
                if image_size is not None and im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                out[i] = np.asarray(im).reshape(h, w, c)
        except _PIL_ERRORS as e:
            raise _unreadable(f, e) from None
    rel = [f.relative_to(folder).parts for f in files]
    subfolders = sorted({parts[0] for parts in rel if len(parts) > 1})
    labelled = len(subfolders) >= 2 and all(len(parts) > 1 for parts in rel)
    y = torch.tensor([subfolders.index(p[0]) for p in rel]) if labelled else None
    x = images_from_uint8(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
    return Dataset(folder.name, x, y, subfolders if labelled else [], 256)


def resize_dataset(ds: Dataset, size: int) -> Dataset:
    """``ds`` with its images resized to ``size`` x ``size`` (PIL bilinear, antialiased).

    Quantized data (``bins`` > 0) is rounded back onto its levels, so ``bins`` stays true.
    """
    if ds.kind != "image":
        raise UserError(
            f"--image-size applies to images, but data set {ds.name!r} holds vectors of shape "
            f"{ds.shape}; drop --image-size"
        )
    n, c, h, w = ds.x.shape
    if (h, w) == (size, size):
        return ds
    planes = ds.x.reshape(n * c, h, w).numpy().astype(np.float32)
    x = np.stack(
        [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in planes]
    )
    x = np.clip(x, -1.0, 1.0)
    if ds.bins:
        step = 2.0 / (ds.bins - 1)
        x = np.rint((x + 1.0) / step) * step - 1.0
    x = torch.from_numpy(x.astype(np.float32)).reshape(n, c, size, size)
    return Dataset(ds.name, x, ds.y, list(ds.classes), ds.bins, dict(ds.extra))
