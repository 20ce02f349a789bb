"""Image files as models take them: decoded, resized to one height and width, and given one number
of channels (grey or colour, alpha dropped), for training folders and for new files alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def image_folder(per_class: dict[str, list[Path]], image_size, channels: int | None = None):
    """Images of the class folders, one size (`image_size`, or all alike) and one number of channels
    (`channels`, or 3 when any image has colour, else 1), float32 in 0-255; their labels."""
    import tensorflow as tf

    images, labels, first = [], [], None
    for name, files in per_class.items():
        for f in files:
            img = decode_image(f)
            if image_size is not None:
                img = tf.image.resize(img, image_size).numpy()
            elif first is None:
                first = (f, img.shape[:2])
            elif img.shape[:2] != first[1]:
                raise DataError(
                    f"{f}: image is {img.shape[1]}x{img.shape[0]} but {first[0]} is {first[1][1]}x{first[1][0]}; "
                    "pass image_size=(height, width) (CLI: --image-size HxW) to resize all"
                )
            images.append(img)
            labels.append(name)
    channels = channels or (3 if any(i.shape[-1] >= 3 for i in images) else 1)
    return np.stack([with_channels(i, channels) for i in images]).astype("float32"), np.array(labels), "image"


def decode_image(f: Path) -> np.ndarray:
    import tensorflow as tf

    try:
        return tf.io.decode_image(f.read_bytes(), expand_animations=False).numpy()
    except Exception as exc:
        raise DataError(f"{f}: cannot decode as an image ({type(exc).__name__})") from None


def with_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Grey (with or without alpha) or colour (with or without alpha) -> `channels` 1 or 3, alpha dropped."""
    colour = img.shape[-1] >= 3
    if channels == 3:
        return img[..., :3] if colour else np.repeat(img[..., :1], 3, axis=-1)
    if colour:  # ITU-R 601 luma, as tf.image.rgb_to_grayscale
        return (img[..., :3].astype("float32") @ np.array([0.2989, 0.587, 0.114], dtype="float32"))[..., None]
    return img[..., :1]


def image_files(x) -> list[Path] | None:
    """The image files `x` names: a folder (sub-folders included, sorted by path), one file, or a list of
    files; None when `x` is not a path or a list of paths."""
    if isinstance(x, (str, Path)):
        path = Path(x)
        if path.is_dir():
            return sorted(
                f
                for f in path.rglob("*")
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
            )
        return [path]
    if isinstance(x, (list, tuple)) and len(x) and all(isinstance(v, (str, Path)) for v in x):
        return [Path(v) for v in x]
    return None


def read_image_files(files: list[Path], what: str, shape: tuple) -> np.ndarray:
    """New images for a model that takes `shape` (height, width, channels): each file decoded, resized
    to that height and width and given its channels, as an `image_size` folder is read."""
    if not files:
        raise DataError(f"{what}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
            problem = "not an image file" if f.is_file() else "no such file"
            raise DataError(f"{what}: {f}: {problem} ({', '.join(IMAGE_SUFFIXES)})")
    return image_folder({"": files}, tuple(shape[:2]), shape[2])[0]
