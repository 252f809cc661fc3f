"""The NOTIFY channels the store's statements send on, and their payloads.

This is the one description of the format; the statements in ``queries/*.sql``
that call ``pg_notify`` point here, and listeners import the channel names.

``waypost_ready``
    Runs became claimable, or will be. Sent once per statement that enqueues
    (a batch of runs is one NOTIFY), by a requeue from the dead-letter queue, and
    by a retry. The payload is empty when the runs are claimable now, or the
    number of seconds (decimal text, e.g. ``"2.5"``) after which a retried run
    becomes claimable, so the dispatcher can wake up then instead of polling.
    A payload it cannot parse counts as "now".

``waypost_cancel``
    A running run's cancellation was requested (``cancel_run``). The payload is
    its grace period in seconds (decimal text); its lease ends then, and the
    dispatcher reaps it (kills the worker, ends the run ``cancelled``) at that
    moment instead of at its next periodic check.

``waypost_warm``
    A warm runner was assigned an attempt by a replica that does not hold its
    poll (``warm_notify``). The payload is the runner's id (UUID text); the
    replica that holds the poll answers it at once.

``waypost_events``
    Events were written while an event reader was armed (migration 0015): one per
    transaction that inserts into ``run_events``, sent by a trigger. The payload is
    the writing transaction's id (``pg_current_xact_id()``, decimal text); a reader
    has read that transaction's events once its horizon is past it.

Postgres folds identical notifications sent in one transaction into one, and
delivers them only on commit, so a rolled-back enqueue wakes no one.
"""

from __future__ import annotations

READY_CHANNEL = "waypost_ready"
CANCEL_CHANNEL = "waypost_cancel"
WARM_CHANNEL = "waypost_warm"
EVENTS_CHANNEL = "waypost_events"
