"""Coverage-guided fuzzing of the chute format reader with atheris (libFuzzer for Python).

    CHUTE_FUZZ_DIR=/tmp/fuzz python tests/fuzz_format.py -runs=20000 -rss_limit_mb=1024 -timeout=20

Each input either damages a pristine dataset (:mod:`hostile`'s damages, chosen by the input's
bytes) or is itself the manifest's text.  Reading must succeed or raise a :class:`chute.ChuteError`:
any other exception is reported by atheris as a finding, a crash of the interpreter kills the run,
``-rss_limit_mb`` catches a huge allocation and ``-timeout`` a hang.  The datasets are written under
``CHUTE_FUZZ_DIR`` (the temp dir if unset): libFuzzer ends the process with ``exit()``, so no Python
clean-up runs and the caller removes that folder (the test gives it a pytest ``tmp_path``).  The test
suite runs a short campaign (``tests/test_hostile.py``); run it longer by hand (docs/guarantees.md has
the figures).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

with atheris.instrument_imports():
    import chute
    import hostile
    from chute.format import MANIFEST

WORK = Path(tempfile.mkdtemp(prefix="chute-fuzz-", dir=os.environ.get("CHUTE_FUZZ_DIR")))
PRISTINE = hostile.build(WORK)


def one(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    pristine = PRISTINE[provider.PickValueInList(sorted(PRISTINE))]
    if provider.ConsumeBool():  # the manifest's text, whatever the input says
        target = hostile.damage(pristine, WORK / "case", hostile.Damage("append", 0, 0.0, 0, 0))
        (target / MANIFEST).write_bytes(provider.ConsumeBytes(provider.remaining_bytes()))
    else:
        how = hostile.Damage(
            provider.PickValueInList(list(hostile.KINDS)),
            provider.ConsumeIntInRange(0, 7),
            provider.ConsumeProbability(),
            provider.ConsumeIntInRange(0, 2**40),
            provider.ConsumeIntInRange(0, 2**31),
        )
        target = hostile.damage(pristine, WORK / "case", how)
    with contextlib.suppress(chute.FormatError):  # (any other error is a finding)
        hostile.read_everything(target)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
