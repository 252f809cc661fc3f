-- A checkpoint event names the version of the checkpoint it records (`seq`, which
-- every write of a key renews), so that a stream asked for checkpoint data
-- (`?checkpointData=1`) can tell whether the stored value is still the one the
-- event is about or a later attempt's rewrite. Key and size as before; never the data.
CREATE OR REPLACE FUNCTION run_events_checkpoint_written() RETURNS trigger
LANGUAGE plpgsql SET search_path = waypost, pg_catalog AS $$
BEGIN
    INSERT INTO run_events (run_id, kind, attempt, data)
    SELECT n.run_id, 'checkpoint', n.attempt,
           jsonb_build_object('key', n.key, 'sizeBytes', n.size_bytes, 'seq', n.seq)
    FROM new_rows n;
    RETURN NULL;
END
$$;
