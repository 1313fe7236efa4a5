-- Example questions over the export (ClickHouse; the table of clickhouse-schema.sql).

-- Censored names per vantage: first and last time seen blocked, days blocked, the layer.
SELECT vantage, domain,
       min(target_started_at)                           AS first_blocked,
       max(target_started_at)                           AS last_blocked,
       uniqExact(toDate(target_started_at))             AS days_blocked,
       arrayStringConcat(groupUniqArray(blocking_layer), ',') AS layers
FROM censorprobe_rows
WHERE blocked
GROUP BY vantage, domain
ORDER BY days_blocked DESC, domain;

-- Forged DNS answers: each forged address with how many names got it.
SELECT address, uniqExact(domain) AS names, groupUniqArray(method) AS methods
FROM censorprobe_rows
WHERE stage = 'dns' AND address_role = 'forged'
GROUP BY address
ORDER BY names DESC;

-- Daily share of measured names blocked, per vantage and layer.
SELECT toDate(target_started_at) AS day, vantage,
       uniqExactIf(domain, blocked) / uniqExact(domain) AS blocked_share,
       groupUniqArray(blocking_layer) AS layers
FROM censorprobe_rows
GROUP BY day, vantage
ORDER BY day, vantage;

-- Connect time of the test probe per verdict (ms).
SELECT stage, verdict, count() AS probes,
       round(quantileExact(0.5)(connect_ms), 1) AS median_connect_ms,
       round(quantileExact(0.9)(total_ms), 1) AS p90_total_ms
FROM censorprobe_rows
WHERE connect_ms IS NOT NULL
GROUP BY stage, verdict
ORDER BY stage, probes DESC;
