-- Two indexes of the hot table cost more than they return:
-- * run_queue_leases (lease_expires_at) made every heartbeat a non-HOT update (a
--   new entry in every index of run_queue for each lease extension). The expiry
--   scan reads the running rows through run_queue_running instead: at most the
--   total concurrency of all queues, a small set, since finished runs leave the
--   table. Heartbeats now change no indexed column and stay on their page.
-- * run_queue_claim_token (unique) was one more index entry per claim. Tokens come
--   from the claim_tokens sequence, and every runner write looks its attempt up
--   by (run_id, claim_token) through the primary key; attempts.claim_token keeps
--   the durable uniqueness check.
DROP INDEX run_queue_leases;
DROP INDEX run_queue_claim_token;
