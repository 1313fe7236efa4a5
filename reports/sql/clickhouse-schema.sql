-- censorprobe export --format parquet: the table in ClickHouse.
-- One row per target record x stage (dns, http, tls) x address; see README.md here.
--
-- Load:   clickhouse-client --query "INSERT INTO censorprobe_rows FORMAT Parquet" < scan.parquet
-- Or query a file in place with the file() / s3() table functions (FORMAT Parquet).
CREATE TABLE IF NOT EXISTS censorprobe_rows
(
    report_file        LowCardinality(String),
    record_line        UInt64,
    vantage            LowCardinality(Nullable(String)),
    shard              LowCardinality(Nullable(String)),
    tool_version       LowCardinality(Nullable(String)),
    scan_started_at    Nullable(DateTime64(6, 'UTC')),
    domain             String,
    attempt            Nullable(UInt32),
    categories         Array(LowCardinality(String)),
    target_started_at  Nullable(DateTime64(6, 'UTC')),
    target_duration_ms Float64,
    blocked            Nullable(Bool),
    blocking_layer     LowCardinality(Nullable(String)),
    accessible         Nullable(Bool),
    stage              LowCardinality(String),
    verdict            LowCardinality(String),
    method             LowCardinality(Nullable(String)),
    methods            Array(LowCardinality(String)),
    rcode              LowCardinality(Nullable(String)),
    failed_at          LowCardinality(Nullable(String)),
    injector           LowCardinality(Nullable(String)),
    control_passed     Nullable(Bool),
    residual           Nullable(Bool),
    address            Nullable(String),
    port               Nullable(UInt16),
    address_role       LowCardinality(Nullable(String)),
    dns_reply_ms       Nullable(Float64),
    connect_ms         Nullable(Float64),
    first_byte_ms      Nullable(Float64),
    handshake_ms       Nullable(Float64),
    total_ms           Nullable(Float64)
)
ENGINE = MergeTree
ORDER BY (domain, stage, report_file, record_line);
