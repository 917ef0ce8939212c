"""The memory cap: how many bytes of tensors gradaudit may allocate for one model.

A model file declares its own sizes: an input of shape (10^6, 10^6) or a ConstantOfShape of 10^12
elements costs a few bytes on disk and terabytes in memory. Allocating first and failing later is
not an option on Linux, where an over-committed allocation succeeds and the process is killed when
it touches the pages; so every size a model declares is compared with the cap *before* anything
is allocated, and a model over it is an input error that names the tensor.

The default cap is half of the memory the process may use (the smaller of physical RAM and a
cgroup limit, as in a CI container): the probe keeps every activation for the backward pass and
also needs gradients of the same size as the weights, so half leaves room for that overhead
and for the rest of the machine. `--max-memory` overrides it.

Files are held to the same cap before they are read or inflated: a regular file by its size, a
zip archive by the sizes its members declare, a .npy array by its header (`read_capped`,
`require_archive_fits`, gradaudit.remedies.batch_file); anything else (a device, a FIFO) is
refused.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Iterable

from gradaudit.errors import InputError

DEFAULT_FRACTION = 0.5
CGROUP_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
MEMINFO = Path("/proc/meminfo")

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?(?:[eE]\d+)?)\s*(?P<unit>[KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def _meminfo_total() -> int | None:
    """MemTotal of /proc/meminfo in bytes (Linux), None where the file is absent or unreadable."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_total() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_limit() -> int | None:
    """The container's memory limit (cgroup v2, then v1); None when unlimited or absent."""
    for path in CGROUP_LIMIT_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def usable_memory() -> int | None:
    """Bytes this process may use at most: physical RAM, lowered by a container limit."""
    known = [size for size in (_meminfo_total() or _sysconf_total(), _cgroup_limit()) if size]
    return min(known) if known else None


def default_max_memory() -> int:
    """The default cap: DEFAULT_FRACTION of usable memory (4 GiB where it cannot be read)."""
    usable = usable_memory()
    return int(usable * DEFAULT_FRACTION) if usable else 4 * _UNITS["G"]


def parse_size(text: str) -> int:
    """Bytes from a size such as `8G`, `512MiB`, `1.5g` or `1e9` (binary units); ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size such as 8G, 512M or 2000000000")
    size = float(match["number"]) * _UNITS[match["unit"].upper()]
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return int(size)


def format_size(size: float) -> str:
    """A byte count for a message: `4.0 TiB`, `512.0 MiB`."""
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f} {unit}iB"
    return f"{int(size)} B"


def tensor_bytes(shape: Iterable[int], itemsize: int) -> int:
    """Exact bytes of a dense tensor (Python ints: 10^12 elements do not overflow)."""
    return math.prod(int(d) for d in shape) * itemsize


def require_fits(what: str, size: int, cap: int) -> None:
    """InputError unless `size` bytes fit under the cap; `what` names the tensor(s) in the message."""
    if size > cap:
        raise InputError(
            f"{what} would need {format_size(size)}, above the memory cap of {format_size(cap)} "
            "(--max-memory raises it)"
        )


def _refuse_size(what: str, size: int, cap: int) -> InputError:
    return InputError(f"{what}: {format_size(size)} to read, above the memory cap of {format_size(cap)} "
                      "(--max-memory raises it)")


def regular_file_size(path: str | os.PathLike[str], what: str) -> int:
    """The size of a regular file; InputError for a device, FIFO or folder (/dev/zero never ends,
    a FIFO blocks), named as `what`."""
    try:
        status = os.stat(path)
    except OSError as problem:
        raise InputError(f"{what}: cannot read it ({problem.strerror or problem})") from None
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"{what}: not a regular file")
    return status.st_size


def read_capped(path: str | os.PathLike[str], cap: int, what: str) -> bytes:
    """The bytes of a regular file of at most `cap` bytes, read no further than that (a file that
    grows while it is read is refused too)."""
    if regular_file_size(path, what) > cap:
        raise _refuse_size(what, regular_file_size(path, what), cap)
    try:
        with open(path, "rb") as file:
            data = file.read(cap + 1)
    except OSError as problem:
        raise InputError(f"{what}: cannot read it ({problem.strerror or problem})") from None
    if len(data) > cap:
        raise _refuse_size(what, len(data), cap)
    return data


def require_archive_fits(path: str | os.PathLike[str], cap: int, what: str) -> list[zipfile.ZipInfo]:
    """The members of a zip archive, once the sizes they inflate to (as the archive declares them,
    which bound what Python's and torch's zip readers return) fit under `cap` together."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as problem:
        raise InputError(f"{what}: not a readable zip archive ({problem})") from None
    total = sum(member.file_size for member in members)
    if total > cap:
        raise InputError(f"{what}: its {len(members)} member(s) inflate to {format_size(total)}, above the memory cap "
                         f"of {format_size(cap)} (--max-memory raises it)")
    return members


_OUT_OF_MEMORY_TEXTS = ("can't allocate memory", "std::bad_alloc", "Cannot allocate memory")


def out_of_memory(problem: BaseException) -> bool:
    """Whether a failed allocation is anywhere in the chain of `problem` (loaders re-raise with `from`).

    Code that turns an error into a result (a skipped probe, a GA503 finding) re-raises these:
    past the memory cap the audit stops, it does not go on without the part that did not fit."""
    seen: set[int] = set()
    current: BaseException | None = problem
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or (isinstance(current, OSError) and current.errno == errno.ENOMEM):
            return True
        if isinstance(current, RuntimeError) and any(text in str(current) for text in _OUT_OF_MEMORY_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False
