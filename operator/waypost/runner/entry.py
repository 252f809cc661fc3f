"""``waypost-runner``: sends the attempt's request, then imports the runner.

See :mod:`waypost.runner.early` for why; :func:`waypost.runner.main.main` does
the rest. Import nothing more here.
"""

from __future__ import annotations

from waypost.runner import early


def main() -> None:
    fetch = early.start_from_environment()
    from waypost.runner import main as runner  # the imports the fetch overlaps

    runner.main(early=fetch)


if __name__ == "__main__":
    main()
