"""The `waypost` command (Typer + rich).

Layout: ``app`` holds the Typer tree, the global options and the option types
commands share (``Output``, ``RunId``, ``Limit``, ``Watch``, ``Wait``...);
``output`` renders tables/JSON/YAML and streams of lines; ``errors`` maps failures
to exit codes; ``common`` has the client plumbing (``call``, run ids by prefix,
payloads, paging, ``--watch``); ``progress`` follows a run (``follow_run``) and
formats events and log lines. Each command group has its own module (``runs``,
``dlq``, ``schedules``, ``events``, ``server``, ``manifests``), registered in
``main``. docs/dev.md, "Adding a `waypost` command", says which helper does what.
"""

from waypost.cli.main import main

__all__ = ["main"]
