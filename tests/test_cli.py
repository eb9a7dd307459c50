"""`chute convert | inspect | verify | bench`, run as a user would, through subprocess: what the
terminal shows (help, messages in flags, progress), and the exit status."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CHUTE = [sys.executable, "-m", "chute.cli"]


def chute_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHUTE, *args], capture_output=True, text=True, timeout=120, env=env)


def test_convert_inspect_verify_a_parquet_table(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "t.parquet"), str(tmp_path / "t.chute")
    pq.write_table(pa.table({"id": np.arange(1000), "score": np.linspace(0, 1, 1000)}), src)
    done = chute_cli("convert", src, dst, "--shard-size", "4KB")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 1,000 samples to {dst}"
    assert "converting: 1,000/1,000 samples (100%)" in done.stderr

    shown = chute_cli("inspect", dst)
    assert shown.returncode == 0, shown.stderr
    assert "1,000 rows in 4 shard(s)" in shown.stdout
    assert "  id: array int64[]" in shown.stdout and "sample 2: id=2, score=0.002" in shown.stdout
    assert "made by:\n  source: " in shown.stdout and "{'" not in shown.stdout

    verified = chute_cli("verify", dst)
    assert verified.returncode == 0 and "OK, 4 shard(s), 1,000 rows" in verified.stdout
    assert "verifying:" in verified.stderr and "(100%)" in verified.stderr
    assert "\r" not in done.stderr + verified.stderr  # not a terminal: plain lines


def test_verify_names_the_bad_shard(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(4000, dtype=np.float32).reshape(1000, 4))
    dst = tmp_path / "x.chute"
    assert chute_cli("convert", str(tmp_path / "x.npy"), str(dst), "--shard-size", "8KB").returncode == 0
    bad = dst / "shard-00001.arrow"
    data = bytearray(bad.read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    result = chute_cli("verify", str(dst))
    assert result.returncode == 1
    assert str(bad) in result.stderr and "corrupted" in result.stderr and "Traceback" not in result.stderr


def test_convert_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    args = ["convert", str(tmp_path / "x.npy"), str(tmp_path / "x.chute")]
    assert chute_cli(*args).returncode == 0
    again = chute_cli(*args)
    assert again.returncode == 1, again.stderr
    assert "or pass --overwrite to replace it." in again.stderr and "overwrite=" not in again.stderr
    assert chute_cli(*args, "--overwrite").returncode == 0


def _photos(root: Path, n: int = 300) -> Path:
    from chute.images.codecs import encode_jpeg

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.jpg").write_bytes(encode_jpeg(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    return root


def test_convert_and_inspect_an_image_folder_keep_images_encoded_and_class_names(tmp_path: Path) -> None:
    import chute

    photos, dst = _photos(tmp_path / "photos", n=9), tmp_path / "p.chute"
    done = chute_cli("convert", str(photos), str(dst))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 9 samples of 3 classes to {dst}"
    shown = chute_cli("inspect", str(dst))
    assert shown.returncode == 0, shown.stderr
    assert "  image: bytes [] (encoded images, decoded when read)" in shown.stdout
    assert "class names (3): 'c0', 'c1', 'c2'" in shown.stdout
    assert "sample 0: image=array[40, 40, 3] uint8" in shown.stdout
    ds = chute.open(dst)
    assert ds.class_names == ["c0", "c1", "c2"] and ds.spec.names == ("image", "label")
    assert ds[0:9][0].shape == (9, 40, 40, 3)  # decoded, as chute.image_folder(photos) gives them
    assert chute.open(dst, decode=False)[0][0] == (photos / "c0" / "0000.jpg").read_bytes()


def test_bench_measures_settings_and_plots(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    done = chute_cli(
        "bench",
        str(photos),
        "--resize",
        "32x32",
        "--seconds",
        "6",
        "--workers",
        "0,2",
        "--prefetch",
        "2,4",
        "--batch-size",
        "32",
        "--plot",
        str(tmp_path / "bench.png"),
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for setting in ("workers=0 prefetch=2", "workers=2 prefetch=2", "workers=2 prefetch=4"):
        assert f"| chute {setting} |" in table
    assert "raw read of the same files, 1 thread (a reference)" in table and "recommended: workers=" in table
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_shuffle_quality_per_mode(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5000, 4), np.float32))
    done = chute_cli("bench", str(tmp_path / "x.npy"), "--shuffle-quality")
    assert done.returncode == 0, done.stderr
    assert "| exact (shuffle=True) | 1.0" in done.stdout and "| block (default) |" in done.stdout


def test_bench_refuses_unknown_peers(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((100, 4), np.float32))
    done = chute_cli("bench", str(tmp_path / "x.npy"), "--compare", "mxnet")
    assert done.returncode == 2 and "usage: chute bench" in done.stderr
    assert "--compare: expected names from torch, tf, keras, received mxnet" in done.stderr


@pytest.mark.frameworks
def test_bench_compares_with_torch_tf_and_keras() -> None:
    import chute
    from chute.cli.bench import BenchOptions, bench

    ds = chute.from_arrays(np.zeros((2000, 8), np.float32), np.arange(2000))
    result = bench(ds, BenchOptions(64, (0,), (2,), ("torch", "tf", "keras"), seconds=6), say=lambda _: None)
    names = [row.name for row in result["rows"]]
    assert names[1:] == [
        "torch DataLoader, 2 workers",
        "tf.data map(AUTOTUNE), prefetch",
        "Keras PyDataset, 2 workers",
    ]
    assert all(row.samples_per_s > 0 for row in result["rows"])


def test_version_prints_chute_version() -> None:
    import chute

    done = chute_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"chute {chute.__version__}"


def test_a_path_that_does_not_exist_is_named_so(tmp_path: Path) -> None:
    for args in (("convert", "nowhere", str(tmp_path / "o.chute")), ("bench", "nowhere")):
        done = chute_cli(*args)
        assert done.returncode == 1, done.stderr
        assert "Received: 'nowhere', which does not exist" in done.stderr
        assert "CSV" not in done.stderr and "Traceback" not in done.stderr


def test_a_file_of_another_kind_is_told_what_convert_takes_and_how_it_tells(tmp_path: Path) -> None:
    from chute.images.codecs import encode_jpeg

    image = tmp_path / "cat.jpg"
    image.write_bytes(encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    done = chute_cli("convert", str(image), str(tmp_path / "o.chute"))
    assert done.returncode == 1, done.stderr
    message = done.stderr
    for kind in ("an image folder", "a chute dataset", ".parquet", ".csv", ".npy"):
        assert kind in message
    assert "a file ending in '.jpg'" in message and "by its suffix" in message
    assert "give the folder that holds one subfolder of images per class" in message
    assert "CSV parse error" not in message


def test_binary_data_quoted_in_an_error_is_never_printed(tmp_path: Path) -> None:
    garbage = tmp_path / "photo.csv"  # an image saved with the wrong suffix
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    done = chute_cli("convert", str(garbage), str(tmp_path / "o.chute"))
    assert done.returncode == 1 and done.stderr.startswith("chute: ")
    shown = done.stderr.rstrip("\n")
    assert all(c.isprintable() for c in shown) and "\ufffd" not in shown and "\n" not in shown


def test_printable_leaves_out_binary_and_escapes_control_characters() -> None:
    from chute.cli.messages import printable

    assert printable("got 2: \ufffd\x00\ufffdab\ufffd\x1b[2J, fix it") == (
        "got 2: <7 characters of binary data>[2J, fix it"
    )
    assert printable("a bell \x07 here") == "a bell \\x07 here"
    assert printable("x" * 5000).endswith("... (1,000 more characters)")


def _commands() -> dict[str, argparse.ArgumentParser]:
    from chute.cli.main import _parser

    parser = _parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_says_what_it_does_and_its_default_and_every_command_has_an_example() -> None:
    commands = _commands()
    assert set(commands) == {"demo", "convert", "bench", "inspect", "verify"}
    for name, command in commands.items():
        assert "Example:\n  chute " + name in str(command.epilog), name
        formatter = command._get_formatter()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = formatter._get_help_string(action)
            assert action.help, f"chute {name} {action.dest} has no help"
            if action.option_strings:
                assert "(default: " in shown, f"chute {name} {action.option_strings[0]}: {shown}"
    assert "image folder" in str(commands["convert"].description)
    shown = chute_cli("convert", "--help", env={**os.environ, "COLUMNS": "200"})  # no line wrapped
    assert shown.returncode == 0
    for text in ("--workers N", "(default: 0)", "--shard-size SIZE", "(default: 256MB)", "Example:"):
        assert text in shown.stdout


def test_every_flag_is_in_the_keyword_table_and_messages_name_flags() -> None:
    from chute.cli.main import KEYWORDS, _flags, _parser

    parser = _parser()
    options = {o for c in [parser, *_commands().values()] for a in c._actions for o in a.option_strings}
    options -= {"-h", "--help"}
    assert options == set(KEYWORDS), "add the new flag to KEYWORDS, with its keyword in the Python API"

    from chute.cli.messages import as_flags

    flags = _flags(parser)
    assert {f.option for f in flags.values()} == {o for o, k in KEYWORDS.items() if k is not None}
    for keyword, flag in flags.items():
        assert flag.option in as_flags(f"pass {keyword}=3 to do it", flags), keyword
    assert as_flags("Remove the file, or convert with on_error='skip'.", flags) == (
        "Remove the file, or convert with --on-error skip."
    )
    assert as_flags("or pass overwrite=True (--overwrite) to replace it", flags) == (
        "or pass --overwrite to replace it"
    )
    assert as_flags("Run the conversion again with resume=True (--resume).", flags) == (
        "Run the conversion again with --resume."
    )
    assert as_flags("Use e.g. shard_size='256MB'; size=(32, 48).", flags) == (
        "Use e.g. --shard-size 256MB; --resize 32x48."
    )
    python = "Resize: chute.image_folder(root, size=(height, width)), or Remote(prefetch=...)."
    assert as_flags(python, flags) == python  # a call stays Python


def test_a_corrupt_image_says_how_to_skip_it_once_in_flags(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", n=6)
    (photos / "c0" / "0003.jpg").write_bytes(b"\xff\xd8 not an image")
    done = chute_cli("convert", str(photos), str(tmp_path / "p.chute"), "--resize", "8x8")
    assert done.returncode == 1, done.stderr
    message = done.stderr.splitlines()[-1]
    assert "0003.jpg" in message and message.endswith("--on-error skip.")
    assert ".." not in message.replace("...", "") and "on_error" not in message
    assert message.count("--on-error skip") == 1


def test_exit_status_usage_error_is_2_and_a_chute_error_is_1(tmp_path: Path) -> None:
    assert chute_cli("convert").returncode == 2
    assert chute_cli("convert", "a", "b", "--resize", "32").returncode == 2
    assert chute_cli("inspect", str(tmp_path)).returncode == 1  # a directory, not a dataset


def test_interrupted_exits_130_and_says_so(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5000, 4), np.float32))
    args = ["bench", str(tmp_path / "x.npy"), "--seconds", "60", "--workers", "0", "--prefetch", "2"]
    child = subprocess.Popen([*CHUTE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr is not None
        assert "measuring chute" in child.stderr.readline()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and "chute: interrupted." in err and "Traceback" not in err


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(40000, dtype=np.float32).reshape(1000, 40))
    dst = tmp_path / "x.chute"
    assert chute_cli("convert", str(tmp_path / "x.npy"), str(dst)).returncode == 0
    with subprocess.Popen(
        [*CHUTE, "inspect", str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # as `| head -1` does once it has its line
        err = child.stderr.read().decode()
        assert child.wait(timeout=120) == 141
    assert err == ""


class _Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_progress_in_a_file_is_a_few_plain_lines_and_on_a_terminal_one_redrawn() -> None:
    from chute.telemetry.progress import Progress

    log = _Stream(terminal=False)
    with Progress("converting", 1000, unit="samples", enabled=True, stream=log) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 10
    assert lines[0].startswith("converting: 100/1,000 samples (10%)")
    assert lines[-1].startswith("converting: 1,000/1,000 samples (100%)")

    terminal = _Stream(terminal=True)
    with Progress("converting", 1000, unit="samples", stream=terminal) as bar:
        bar.update(1000)
    assert terminal.getvalue().startswith("\r") and terminal.getvalue().count("\n") == 1


def test_progress_in_bytes_shows_sizes_that_fit_and_ends_at_100_percent() -> None:
    from chute.telemetry.progress import Progress

    log = _Stream(terminal=False)
    with Progress("verifying", 247_000, unit="bytes", enabled=True, stream=log) as bar:
        bar.update(100_000)
        bar.update(147_000)
    assert log.getvalue().splitlines()[-1].startswith("verifying: 247.0 KB/247.0 KB (100%)")

    rounded = _Stream(terminal=False)  # counts rounded down (whole MB of a 0.2 MB file) still end at 100%
    with Progress("verifying", 1, unit="MB", enabled=True, stream=rounded) as bar:
        bar.update(0)
    assert "(100%)" in rounded.getvalue()
    failed = _Stream(terminal=False)
    with pytest.raises(KeyError), Progress("verifying", 4, enabled=True, stream=failed) as bar:
        bar.update(1)
        raise KeyError("stopped")
    assert "1/4 items (25%)" in failed.getvalue()


def test_bench_plot_without_matplotlib_fails_before_the_run(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((100, 4), np.float32))
    fake = tmp_path / "site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env: dict[str, Any] = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = chute_cli("bench", str(tmp_path / "x.npy"), "--seconds", "30", "--plot", "b.png", env=env)
    assert done.returncode == 1 and "pip install 'chute[plot]'" in done.stderr
    assert "measuring" not in done.stderr  # refused before the 30 seconds, not after


def test_bench_quiets_tensorflow_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from chute.cli.bench import quiet_tensorflow

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


@pytest.mark.frameworks
def test_bench_compare_prints_no_framework_log_lines(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((500, 4), np.float32))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = ["--seconds", "3", "--workers", "0", "--prefetch", "2", "--compare", "tf,keras,torch"]
    done = chute_cli("bench", str(tmp_path / "x.npy"), *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "| tf.data map(AUTOTUNE), prefetch |" in done.stdout
    assert [line for line in done.stderr.splitlines() if not line.startswith("measuring ")] == []
