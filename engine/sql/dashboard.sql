-- Named queries that summarise for the dashboard.

-- name: suspended_groups
SELECT job_type, coalesce(error_type, 'stopped by a person') AS error_type, count(*) AS n,
       min(updated_at) AS first_died, max(updated_at) AS last_died
  FROM jobs WHERE state = 'suspended'
 GROUP BY 1, 2 ORDER BY n DESC, last_died DESC LIMIT $1;
