"""The `waypost` command (Typer + rich).

Layout: ``app`` holds the Typer tree and the global options, ``output`` renders
tables/JSON/YAML, ``errors`` maps failures to exit codes, ``common`` has the
client plumbing (run ids by prefix, paging); each command group has its own
module (``runs``, ``dlq``, ``schedules``, ``server``), registered in ``main``.
"""

from waypost.cli.main import main

__all__ = ["main"]
