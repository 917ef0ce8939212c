"""The memory cap: size parsing, the default from /proc/meminfo or sysconf, the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradaudit import limits
from gradaudit.errors import InputError


@pytest.mark.parametrize(
    "text, size",
    [("2000", 2000), ("8G", 8 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5g", 3 * 1024**3 // 2), ("1e9", 10**9),
     ("4 kb", 4096), ("2T", 2 * 1024**4)],
)
def test_parse_size(text: str, size: int):
    assert limits.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "8X", "1e999"])
def test_parse_size_rejects_nonsense(text: str):
    with pytest.raises(ValueError):
        limits.parse_size(text)


def test_default_is_half_of_meminfo_capped_by_the_cgroup(tmp_path: Path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16777216 kB\nMemFree: 1 kB\n")
    monkeypatch.setattr(limits, "MEMINFO", meminfo)
    monkeypatch.setattr(limits, "CGROUP_LIMIT_FILES", (tmp_path / "absent",))
    assert limits.default_max_memory() == 8 * 1024**3
    cgroup = tmp_path / "memory.max"
    cgroup.write_text(f"{4 * 1024**3}\n")
    monkeypatch.setattr(limits, "CGROUP_LIMIT_FILES", (cgroup,))
    assert limits.default_max_memory() == 2 * 1024**3
    cgroup.write_text("max\n")  # cgroup v2 without a limit
    assert limits.default_max_memory() == 8 * 1024**3


def test_default_falls_back_to_sysconf_without_meminfo(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(limits, "MEMINFO", tmp_path / "absent")
    monkeypatch.setattr(limits, "CGROUP_LIMIT_FILES", ())
    assert limits.default_max_memory() == pytest.approx(limits._sysconf_total() * limits.DEFAULT_FRACTION, rel=1e-9)


def test_tensor_bytes_does_not_overflow_and_require_fits_refuses():
    assert limits.tensor_bytes((10**6, 10**6), 4) == 4 * 10**12
    limits.require_fits("t", 100, 100)
    with pytest.raises(InputError, match=r"t would need 3.6 TiB, above the memory cap of 1.0 GiB"):
        limits.require_fits("t", 4 * 10**12, 1024**3)
