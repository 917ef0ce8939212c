"""Every file is held to --max-memory before it is read or inflated, and must be a regular file.

Each case declares far more than it stores: a deflated archive member of zeros, a .npy header
claiming terabytes, a torch archive that inflates past the cap, a config or a model bigger than
the cap, a baseline that is a device. Each is one line of exit 2 naming the file and the cap, and
is answered from the declared sizes, before the bytes are inflated.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gradaudit.cli import main
from tests.hostile import models

CAP = "64M"
INFLATED = 256 * 1024**2  # what the archive members below expand to: four times the cap


def refused(capsys, *args: str, words: tuple[str, ...]) -> None:
    code = main(["check", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("gradaudit: error:"), err
    for word in words:
        assert word in err[0], err


def zeros_member(archive: zipfile.ZipFile, name: str, header: dict | None = None) -> None:
    """A member of INFLATED bytes (an optional .npy header, then zeros) that deflates to ~0.1%."""
    with archive.open(name, "w", force_zip64=True) as member:
        if header is not None:
            np.lib.format.write_array_header_1_0(member, header)
        chunk = bytes(1 << 22)
        for _ in range(INFLATED // len(chunk)):
            member.write(chunk)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return models.save(models.mlp(), tmp_path / "mlp.onnx")


def test_a_deflated_npz_that_expands_past_the_cap_is_refused_unread(tmp_path: Path, model: Path, capsys):
    data = tmp_path / "batch.npz"
    with zipfile.ZipFile(data, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        zeros_member(archive, "x.npy", {"descr": "<f4", "fortran_order": False, "shape": (INFLATED // 4 - 32,)})
    assert data.stat().st_size < INFLATED // 100
    refused(capsys, str(model), "-q", "--data", str(data), "--max-memory", CAP,
            words=(str(data), "256.0 MiB", "64.0 MiB"))


@pytest.mark.parametrize("shape, stored, words", [
    ((10**6, 10**6), 64, ("[1000000, 1000000]", "3.6 TiB", "64.0 MiB")),
    ((8, 1000), 64, ("[8, 1000]", "more than the 64 B it holds")),
])
def test_a_npy_header_is_checked_before_its_array_is_allocated(tmp_path: Path, model: Path, capsys, shape, stored,
                                                               words):
    data = tmp_path / "batch.npy"
    with open(data, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f4", "fortran_order": False, "shape": shape})
        file.write(bytes(stored))
    refused(capsys, str(model), "-q", "--data", str(data), "--max-memory", CAP, words=(str(data), *words))


def test_a_npz_member_whose_header_claims_more_than_it_holds_is_refused(tmp_path: Path, model: Path, capsys):
    data = tmp_path / "batch.npz"
    with zipfile.ZipFile(data, "w") as archive, archive.open("x.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (4, 10**6)})
        member.write(bytes(32))
    refused(capsys, str(model), "-q", "--data", str(data), words=(str(data), "'x.npy'", "more than the 32 B it holds"))


@pytest.mark.parametrize("as_data", [True, False], ids=["--data", "model"])
def test_a_torch_archive_that_inflates_past_the_cap_is_refused_before_torch_reads_it(tmp_path: Path, model: Path,
                                                                                     capsys, as_data: bool):
    archive_path = tmp_path / "bomb.pt"
    torch.save(torch.zeros(2, 4), archive_path)  # a real torch.save archive, then one inflating member more
    with zipfile.ZipFile(archive_path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        zeros_member(archive, "bomb/data/1")
    args = ([str(model), "-q", "--data", str(archive_path)] if as_data
            else [str(archive_path), "-q", "--input-shape", "2,4"])
    refused(capsys, *args, "--max-memory", CAP, words=(str(archive_path), "inflate to 256.0 MiB", "64.0 MiB"))


def test_a_baseline_that_is_a_device_is_refused(tmp_path: Path, model: Path, capsys, monkeypatch):
    """`baseline = "/dev/zero"` in the pull request's own pyproject.toml: a read that never ends."""
    (tmp_path / "pyproject.toml").write_text('[tool.gradaudit]\nbaseline = "/dev/zero"\n')
    monkeypatch.chdir(tmp_path)
    refused(capsys, str(model), "-q", words=("baseline /dev/zero", "not a regular file"))


def test_a_config_over_the_cap_is_refused_unparsed(tmp_path: Path, model: Path, capsys):
    config = tmp_path / "big.toml"
    config.write_text("[tool.gradaudit]\n" + "# padding\n" * 200_000)
    refused(capsys, str(model), "-q", "--config", str(config), "--max-memory", "1M",
            words=(f"config {config}", "1.0 MiB"))


def test_a_baseline_over_the_cap_is_refused_unparsed(tmp_path: Path, model: Path, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text('{"schema": "gradaudit.baseline/1", "findings": []}' + " " * 2 * 1024**2)
    refused(capsys, str(model), "-q", "--baseline", str(baseline), "--max-memory", "1M",
            words=(f"baseline {baseline}", "1.0 MiB"))


def test_an_onnx_protobuf_over_the_cap_is_refused_unparsed(model: Path, capsys, monkeypatch):
    monkeypatch.chdir(model.parent)  # away from this checkout's pyproject.toml, itself over 100 bytes
    refused(capsys, str(model), "-q", "--max-memory", "100", words=(str(model), "protobuf", "100 B"))


def test_external_data_read_into_memory_counts_against_the_cap(tmp_path: Path, capsys):
    """Small external tensors (4,096 elements at most) are read, not mapped: their lengths
    together (2 x 16 KiB) must fit the cap."""
    model = models.mlp((models.weight("W1", cols=1024, seed=1), models.weight("W2", rows=1024, seed=2)))
    offset = 0
    with open(tmp_path / "weights.bin", "wb") as file:
        for tensor in model.graph.initializer:
            file.write(tensor.raw_data)
            for key, value in (("location", "weights.bin"), ("offset", str(offset)),
                               ("length", str(len(tensor.raw_data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(tensor.raw_data)
            tensor.ClearField("raw_data")
            tensor.data_location = 1  # EXTERNAL
    path = models.save(model, tmp_path / "external.onnx")
    refused(capsys, str(path), "-q", "--max-memory", "20K", words=(str(path), "external data", "32.0 KiB", "20.0 KiB"))
