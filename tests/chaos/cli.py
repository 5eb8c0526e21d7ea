"""`scripts/chaos`: one chaos run from the command line.

    scripts/chaos --provider ebs --seed 1 --steps 1000 [--hosts 3] [--verbose]
    scripts/chaos ebs --steps 100 --seed 7          (the provider may come first)
    scripts/chaos sshfs --steps 100 --seed 7        (the share kind: a multi-writer volume)

Prints the figures table; exit status 0 when no invariant broke, 1 with the seed and the
step log that reproduce the violation.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tests.chaos.checks import Violation
from tests.chaos.share import ShareSimulation
from tests.chaos.sim import Simulation
from tests.chaos.worlds import PROVIDERS

KINDS = (*PROVIDERS, ShareSimulation.kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n")[0])
    parser.add_argument("provider_arg", nargs="?", metavar="PROVIDER", choices=KINDS)
    parser.add_argument("--provider", choices=KINDS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="print every step as it ends")
    args = parser.parse_args(argv)
    provider = args.provider or args.provider_arg
    if provider is None:
        parser.error(f"name a provider: --provider {{{','.join(KINDS)}}}")
    if args.hosts < 3:
        parser.error("--hosts must be at least 3")
    if os.geteuid() != 0:
        print("scripts/chaos: needs root (loop devices, mounts)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    simulation: Simulation | ShareSimulation
    if provider == ShareSimulation.kind:
        simulation = ShareSimulation(args.seed, args.steps, args.hosts, verbose=args.verbose)
    else:
        simulation = Simulation(provider, args.seed, args.steps, args.hosts, verbose=args.verbose)
    try:
        report = simulation.run()
    except Violation:
        return 1
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
