-- Named queries that summarise for the dashboard.

-- name: suspended_groups
-- Over the newest 10,000 suspended jobs (the state index finds them), so the cost is
-- bounded however many there are.
SELECT job_type, coalesce(error_type, 'stopped by a person') AS error_type, count(*) AS n,
       min(updated_at) AS first_died, max(updated_at) AS last_died
  FROM (SELECT job_type, error_type, updated_at FROM jobs WHERE state = 'suspended'
         ORDER BY updated_at DESC LIMIT 10000) AS newest
 GROUP BY 1, 2 ORDER BY n DESC, last_died DESC LIMIT $1;

-- name: known_queues
-- Every queue seen, skipping through the (queue, ...) indexes one probe per queue, as
-- known_types does: the dashboard asks every few seconds.
WITH RECURSIVE j(q) AS (
    (SELECT queue FROM jobs ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM jobs WHERE queue > j.q ORDER BY queue LIMIT 1)
      FROM j WHERE j.q IS NOT NULL
), d(q) AS (
    (SELECT queue FROM dead_letters ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM dead_letters WHERE queue > d.q ORDER BY queue LIMIT 1)
      FROM d WHERE d.q IS NOT NULL
)
SELECT q AS queue FROM j WHERE q IS NOT NULL
UNION
SELECT q FROM d WHERE q IS NOT NULL;

-- name: count_states_capped
-- Jobs in each state of $1, each counted up to $2 + 1 through the state index: a cost
-- that does not grow with history, in one round trip.
SELECT s.state, (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE jobs.state = s.state
                                        LIMIT $2 + 1) AS capped) AS n
  FROM unnest($1::text[]) AS s(state);
