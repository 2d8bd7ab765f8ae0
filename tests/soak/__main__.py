"""`python -m tests.soak [--minutes M] [--seed S] [--watchers N]` (`make soak`)."""

from __future__ import annotations

import argparse
import random
import sys

from tests.soak.faults import FAULT_KINDS
from tests.soak.runner import Options, run
from tests.soak.world import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None, help="reproduces a run (default: random)")
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--faults-per-minute", type=float, default=6.0)
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated fault kinds to inject (default: all of {', '.join(FAULT_KINDS)})",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    options = Options(
        minutes=args.minutes,
        seed=seed,
        watchers=args.watchers,
        out=ROOT / ".cache" / "soak" / f"seed-{seed}",
        faults_per_minute=args.faults_per_minute,
        fault_kinds=tuple(kind for kind in args.faults.split(",") if kind),
    )
    unknown = set(options.fault_kinds) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
