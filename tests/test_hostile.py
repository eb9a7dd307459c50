"""Hostile datasets: damaged, inconsistent or crafted files end in a chute error, never a crash,
a hang, an out-of-bounds read or a huge allocation; nothing in a dataset is ever run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chute
from chute.cli.main import main as cli
from chute.format import MANIFEST
from hostile import KINDS, Damage, build, damage, read_everything

HERE = Path(__file__).parent
CASES = 600  # hypothesis examples per run of the suite (the atheris campaign below adds more)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("pristine"))


damages = st.builds(
    Damage,
    kind=st.sampled_from(KINDS),
    shard=st.integers(0, 7),
    where=st.floats(0, 1),
    size=st.integers(0, 2**40),
    value=st.integers(0, 2**31),
)


@settings(max_examples=CASES)
@given(how=damages, which=st.sampled_from(["mixed", "fixed"]))
def test_damaged_datasets_read_or_fail_with_a_format_error(
    pristine: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, how: Damage, which: str
) -> None:
    target = damage(pristine[which], tmp_path_factory.getbasetemp() / "case", how)
    shards = json.loads((target / MANIFEST).read_text())["shards"]
    damaged = shards[how.shard % len(shards)]["file"]
    try:
        read_everything(target)  # reads every row every way, then verifies every checksum
    except chute.FormatError as error:  # (any other error fails the test)
        # A shard's bytes or its entry in the manifest: that shard is named.  The fields: the
        # manifest, or the first shard found to disagree with it.
        files = [damaged] if how.kind != "spec" else [MANIFEST, *(entry["file"] for entry in shards)]
        assert any(name in str(error) for name in files), (how, str(error))
        return
    # It read and verified: so the shards are intact (the damage, if any, was a consistent spec).
    for shard in pristine[which].glob("*.arrow"):
        assert (target / shard.name).read_bytes() == shard.read_bytes(), how


def test_the_atheris_campaign_finds_nothing(tmp_path: Path) -> None:
    """libFuzzer-guided inputs: any non-chute exception, a crash, 1 GB of memory or 20 s is a finding."""
    (tmp_path / "corpus").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_format.py"),
            "-runs=1500",
            "-seed=1",
            "-rss_limit_mb=1024",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path / "corpus"),  # (libFuzzer adds to the first directory)
            str(HERE / "fuzz_corpus"),  # inputs that once found a bug, replayed first
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "CHUTE_FUZZ_DIR": str(tmp_path)},  # its datasets go where pytest cleans up
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 1500 runs" in run.stderr


def test_a_manifest_cannot_claim_more_rows_than_its_shards_hold(
    pristine: dict[str, Path], tmp_path: Path
) -> None:
    target = damage(pristine["fixed"], tmp_path / "d", Damage("rows", 0, 0.0, 2**39, 1))
    with pytest.raises(chute.FormatError, match=r"at most [\d,]+ rows of 20 bytes"):
        chute.open(target)  # refused before any loader could plan 2**40 rows


def test_a_compressed_shard_is_refused_not_inflated(pristine: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "d"
    shutil.copytree(pristine["fixed"], target)
    shard = target / "shard-00000.arrow"
    table = pa.ipc.open_file(shard.read_bytes()).read_all()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["shards"][0]["bytes"] = shard.stat().st_size
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(chute.FormatError, match="uncompressed buffers inside the file"):
        chute.open(target)[0]


def test_shard_links_out_of_the_dataset_are_refused(pristine: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "d"
    shutil.copytree(pristine["fixed"], target)
    outside = tmp_path / "elsewhere.arrow"
    os.replace(target / "shard-00001.arrow", outside)
    os.symlink(outside, target / "shard-00001.arrow")
    with pytest.raises(chute.FormatError, match="inside the dataset directory"):
        chute.open(target)
    os.remove(target / "shard-00001.arrow")
    os.symlink("./shard-00000.arrow", target / "shard-00001.arrow")  # a link inside: no escape
    with pytest.raises(chute.FormatError, match="bytes in shard"):  # (but not the right shard)
        chute.open(target)


def test_a_manifest_or_shard_that_is_no_regular_file_is_refused_not_waited_on(
    pristine: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "d"
    shutil.copytree(pristine["fixed"], target)
    os.replace(target / "shard-00001.arrow", tmp_path / "aside")
    os.mkfifo(target / "shard-00001.arrow")  # opening a FIFO to read waits for a writer: for ever
    with pytest.raises(chute.FormatError, match="a regular file"):
        chute.open(target)
    os.replace(target / MANIFEST, tmp_path / "manifest")
    os.mkfifo(target / MANIFEST)
    with pytest.raises(chute.FormatError, match="a regular file"):
        chute.open(target)


class Planted:
    """Unpickling this would create ``path``: planted in every place a dataset has room for bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.path,))


def test_nothing_in_a_dataset_is_unpickled_or_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(Planted(marker))
    samples = [{"blob": payload, "text": payload.hex(), "x": np.float32(i)} for i in range(20)]
    root = tmp_path / "planted.chute"
    chute.convert(samples, root, progress=False)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["made_by"] = {"source": payload.decode("latin-1"), "__reduce__": "os.system('touch x')"}
    (root / MANIFEST).write_text(json.dumps(manifest))
    ds = chute.open(root)
    for batch in ds.loader(4, workers=2, worker_type="process"):
        assert batch["blob"][0] == payload  # bytes are handed over as bytes
    assert cli(["inspect", str(root)]) == 0
    assert cli(["verify", str(root)]) == 0
    assert not marker.exists()
    out = capsys.readouterr().out
    assert "nothing in it is unpickled or evaluated" in out


def test_verify_names_what_it_checked(pristine: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", str(pristine["mixed"])]) == 0
    out = capsys.readouterr().out
    assert "every checksum matches" in out and "5 fields of numbers, bytes and text" in out


def test_a_shard_planting_a_pickled_extension_type_runs_nothing(
    pristine: dict[str, Path], tmp_path: Path
) -> None:
    """pyarrow 14.0.0 unpickled the metadata of an ``arrow.py_extension_type`` field while opening
    an IPC file (CVE-2023-47248): chute needs a pyarrow past it, and refuses extension types."""
    target = tmp_path / "d"
    shutil.copytree(pristine["fixed"], target)
    marker = tmp_path / "code-ran"
    shard = target / "shard-00000.arrow"
    table = pa.ipc.open_file(shard.read_bytes()).read_all()
    planted = {
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": pickle.dumps(Planted(marker)),
    }
    schema = pa.schema([f.with_metadata(planted) if i == 0 else f for i, f in enumerate(table.schema)])
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(pa.Table.from_arrays(table.columns, schema=schema))
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["shards"][0]["bytes"] = shard.stat().st_size
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        chute.FormatError,
        match=f"plain Arrow types.*extension type on field.*{shard}|{shard}.*extension type",
    ):
        read_everything(target)
    assert not marker.exists()
    from importlib.metadata import requires

    floor = next(r for r in requires("chute") or [] if r.startswith("pyarrow"))
    assert floor.replace(" ", "") == "pyarrow>=14.0.1"  # (the pickle-running 14.0.0 is refused)


@pytest.mark.parametrize("how", ["manifest loop", "manifest directory", "manifest outside", "shard loop"])
def test_links_loops_and_directories_are_format_errors_naming_the_file(
    pristine: dict[str, Path], tmp_path: Path, how: str
) -> None:
    target = tmp_path / "d"
    shutil.copytree(pristine["fixed"], target)
    name = MANIFEST if how.startswith("manifest") else "shard-00001.arrow"
    os.replace(target / name, tmp_path / "aside")
    if how.endswith("loop"):
        os.symlink(name, target / name)  # a link to itself: ELOOP
    elif how.endswith("directory"):
        os.mkdir(target / name)
    else:
        os.symlink(tmp_path / "aside", target / name)  # a manifest outside, as shards are refused
    for read in (chute.open, chute.verify):
        with pytest.raises(chute.FormatError) as info:
            read(target)
        message = str(info.value)
        assert name in message and str(target) in message, message
        assert "Errno" not in message and ": 4" not in message  # no raw OSError, no descriptor number
