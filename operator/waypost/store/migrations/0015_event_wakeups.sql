-- Wake event readers with NOTIFY, but only when one is waiting.
--
-- The coordinator's event pump (engine/events.py) used to read the event log every
-- 20 ms for as long as anyone subscribed: an open UI tab cost 50 queries a second,
-- and a change waited up to 20 ms for the next read. A NOTIFY per transaction that
-- writes events would wake it at once, but NOTIFY serialises the commits of every
-- notifying transaction in the cluster (one lock, held through the WAL flush) and
-- would slow a drain down for as long as anyone listened.
--
-- So a reader *arms* itself here when it has read everything and goes to sleep, and
-- disarms when it wakes up. While any reader is armed, a statement that inserts
-- events sends one NOTIFY on `waypost_events` (folded to one per transaction; the
-- payload is the transaction id, see store/notify.py). While readers are busy
-- reading, or nobody subscribes, writers pay one lookup in this tiny table per
-- statement and never NOTIFY. `armed_until` lets the row of a reader that died
-- expire instead of arming writers forever.
--
-- UNLOGGED: the rows describe live connections; after a crash there are none.
CREATE UNLOGGED TABLE run_event_readers (
    reader uuid PRIMARY KEY,
    armed_until timestamptz NOT NULL
);

CREATE FUNCTION run_events_wake_readers() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM run_event_readers WHERE armed_until > now()) THEN
        PERFORM pg_notify('waypost_events', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
END
$$;

-- Every path that writes events inserts into run_events (the triggers of 0012, the
-- log append, replays), so one trigger here covers them all.
CREATE TRIGGER run_events_wake_readers AFTER INSERT ON run_events
    FOR EACH STATEMENT EXECUTE FUNCTION run_events_wake_readers();
