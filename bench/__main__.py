"""`make bench`: run every benchmark and print its table."""

from __future__ import annotations

from . import cli_startup, engines


def main() -> None:
    cli_startup.main()
    engines.main()


if __name__ == "__main__":
    main()
