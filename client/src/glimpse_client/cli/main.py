"""Entry point of the ``glimpse`` console script."""

from __future__ import annotations

import sys

MISSING_EXTRA = "glimpse: the command line needs extra packages: pip install 'glimpse-client[cli]'"


def main(argv: list[str] | None = None) -> int:
    """Run ``glimpse`` with ``argv`` (default: the process's arguments) and return its exit code."""
    try:
        import cliff  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        sys.stderr.write(MISSING_EXTRA + "\n")
        return 1
    from .app import run

    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # argparse's --help (0) and usage errors (2)
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
