-- censorprobe export --format parquet: the table in DuckDB.
-- One row per target record x stage (dns, http, tls) x address; see README.md here.
--
-- DuckDB reads the files directly: a view over every export (shards, vantages, days)
-- needs no loading at all.
CREATE OR REPLACE VIEW censorprobe AS
SELECT * FROM read_parquet('exports/*.parquet', union_by_name = true);

-- Or a table with the types spelled out (what read_parquet infers), to load into:
--   INSERT INTO censorprobe_rows SELECT * FROM read_parquet('exports/*.parquet');
CREATE TABLE IF NOT EXISTS censorprobe_rows (
    report_file        VARCHAR NOT NULL,   -- the report as given to export
    record_line        UBIGINT NOT NULL,   -- 1-based line of the target record in it
    vantage            VARCHAR,            -- header: vantage point (scan --vantage)
    shard              VARCHAR,            -- header: "I/N" when the scan was a shard
    tool_version       VARCHAR,            -- header: censorprobe version
    scan_started_at    TIMESTAMPTZ,        -- header: when the scan started (UTC)
    domain             VARCHAR NOT NULL,
    attempt            UINTEGER,           -- with scan --repeat: 1-based attempt
    categories         VARCHAR[] NOT NULL, -- Citizen Lab category codes
    target_started_at  TIMESTAMPTZ,
    target_duration_ms DOUBLE NOT NULL,
    blocked            BOOLEAN,            -- NULL: inconclusive
    blocking_layer     VARCHAR,            -- dns, tcp_ip, http, tls (when blocked)
    accessible         BOOLEAN,            -- NULL: nothing says
    stage              VARCHAR NOT NULL,   -- dns, http, tls
    verdict            VARCHAR NOT NULL,   -- the stage's verdict (report wire word)
    method             VARCHAR,            -- dns: the poisoning method
    methods            VARCHAR[] NOT NULL, -- dns: every method that applies
    rcode              VARCHAR,            -- dns: the resolver's error rcode
    failed_at          VARCHAR,            -- http/tls: connect, request, response, handshake
    injector           VARCHAR,            -- http/tls: the injector the capture matched
    control_passed     BOOLEAN,            -- http/tls: the benign control connection worked
    residual           BOOLEAN,            -- http/tls: residual blocking seen
    address            VARCHAR,            -- the row's address (IPv4 or IPv6), NULL if none
    port               USMALLINT,
    address_role       VARCHAR,            -- forged, genuine (dns), probed (http/tls)
    dns_reply_ms       DOUBLE,             -- dns: the resolver's first reply
    connect_ms         DOUBLE,             -- http/tls: the test probe's timings
    first_byte_ms      DOUBLE,
    handshake_ms       DOUBLE,
    total_ms           DOUBLE
);
