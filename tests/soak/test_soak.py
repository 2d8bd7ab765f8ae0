"""The short, fixed-seed chaos soak that `make test` runs (`make soak` is the long one).

Its own control plane (the soak kills the API server), 16 watchers, the fault kinds in a
shuffled round (as many as fit in the time), then the invariants. The output (not captured)
holds the table and, on failure, the failing watchers' timelines and the seed;
`make soak SOAK_SEED=<seed> SOAK_MINUTES=3 SOAK_WATCHERS=16` replays the same story.
"""

from __future__ import annotations

import pytest

from tests.soak.runner import Options, run
from tests.soak.world import ROOT

SEED = 20261130


@pytest.mark.integration
def test_short_soak_loses_invents_and_reruns_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    options = Options(
        minutes=3.0,
        seed=SEED,
        watchers=16,
        out=ROOT / ".cache" / "soak" / "short",
        faults_per_minute=12.0,
    )
    with capsys.disabled():  # the table and summary line belong in the test log
        code = run(options)
    assert code == 0, f"soak failed; seed {SEED}, see the output above and {options.out}"
