-- Example questions over the export (DuckDB; the view `censorprobe` of duckdb-schema.sql).

-- Censored names per vantage: first and last time seen blocked, days blocked, the layer.
SELECT vantage, domain,
       min(target_started_at)                         AS first_blocked,
       max(target_started_at)                         AS last_blocked,
       count(DISTINCT target_started_at::DATE)        AS days_blocked,
       string_agg(DISTINCT blocking_layer, ',')       AS layers
FROM censorprobe
WHERE blocked
GROUP BY vantage, domain
ORDER BY days_blocked DESC, domain;

-- Forged DNS answers: each forged address with how many names got it, and how.
SELECT address, count(DISTINCT domain) AS names, string_agg(DISTINCT method, ',') AS methods
FROM censorprobe
WHERE stage = 'dns' AND address_role = 'forged'
GROUP BY address
ORDER BY names DESC;

-- Injected resets and timeouts per stage and where in the exchange they hit.
SELECT stage, verdict, failed_at, coalesce(injector, '-') AS injector, count(*) AS rows
FROM censorprobe
WHERE stage IN ('http', 'tls') AND verdict NOT IN ('ok', 'skipped')
GROUP BY ALL
ORDER BY rows DESC;

-- Connect time of the test probe per verdict (ms): a censor that drops vs one that resets.
SELECT stage, verdict, count(*) AS probes,
       round(median(connect_ms), 1) AS median_connect_ms,
       round(quantile_cont(total_ms, 0.9), 1) AS p90_total_ms
FROM censorprobe
WHERE connect_ms IS NOT NULL
GROUP BY stage, verdict
ORDER BY stage, probes DESC;

-- Shards of one run: did every shard report, and how many names each measured.
SELECT vantage, shard, count(DISTINCT domain) AS names, min(scan_started_at) AS started
FROM censorprobe
GROUP BY vantage, shard
ORDER BY vantage, shard;
