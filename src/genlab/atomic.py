"""Crash-safe publishing of files and folders: write aside, fsync, then one atomic rename.

A folder is built under a temporary name beside its destination and published by a single
rename. Replacing an existing folder uses ``renameat2(RENAME_EXCHANGE)`` (Linux), which swaps the
two names in one step, so the destination is never missing and never half-written. Where the
exchange is unavailable the fallback is two renames; a crash between them leaves the old folder
under ``.NAME.old-*``, which :func:`recover_dir` renames back. Leftover temporary folders from a
killed writer are removed by :func:`recover_dir` on the next start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # published folders and files get the usual permissions, not mkdtemp's 0700


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap the names ``a`` and ``b`` (both must exist); False if the OS cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: the file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """fsync a file written by a library (safetensors), and give it the usual permissions."""
    os.chmod(path, 0o666 & ~UMASK)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_json(path: Path, data: Any) -> None:
    """Write JSON and fsync it, so that a later rename publishes complete contents."""
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Replace the file ``path`` with ``text`` in one rename (readers see old or new, never half)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def temp_dir_for(dst: Path) -> Path:
    """A fresh temporary folder beside ``dst``, named so that :func:`recover_dir` finds it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~UMASK)
    return tmp


def replace_dir(src: Path, dst: Path) -> None:
    """Publish folder ``src`` at ``dst`` atomically; an existing ``dst`` is replaced and removed."""
    if not dst.exists():
        os.rename(src, dst)
    elif exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old contents
    else:
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(dst.parent)


def readable_dir(dst: Path) -> Path:
    """Where a reader finds ``dst`` without touching a writer's files: ``dst`` itself, or, while a
    writer on a file system without RENAME_EXCHANGE is between its two renames (or was killed
    there), the displaced previous version. Only writers run :func:`recover_dir`: a reader that
    cleaned up would delete the temporary folder of a save in progress."""
    if dst.exists():
        return dst
    olds = sorted(dst.parent.glob(f".{dst.name}.old-*"))
    return olds[-1] if olds else dst


def read_dir(dst: Path, read: Callable[[Path], T], tries: int = 3) -> T:
    """``read(readable_dir(dst))``, read again when what it read was a displaced version that vanished
    meanwhile: its writer finished the second rename and removed it, so ``dst`` is whole again."""
    while True:
        source = readable_dir(dst)
        try:
            return read(source)
        except Exception:
            tries -= 1
            if source == dst or source.exists() or not tries:
                raise


def recover_dir(dst: Path) -> None:
    """Undo what a crash mid-:func:`replace_dir` left: restore a displaced ``dst``, drop temporaries.
    For writers, before they write ``dst``; readers use :func:`readable_dir` or :func:`read_dir`."""
    parent = dst.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{dst.name}.old-*"))
    if olds and not dst.exists():
        os.rename(olds.pop(), dst)
    for leftover in [*olds, *parent.glob(f".{dst.name}.tmp-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
