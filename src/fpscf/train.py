"""``python -m fpscf.train --config config.yaml [--<option>=value ...] [--resume]`` (same as ``fpscf train``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from fpscf.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
