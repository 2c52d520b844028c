"""The span store: every process's finished spans, kept queryable by trace, with retention.

`store.py` is the interface (`SpanStore`, `TraceQuery`, `TraceSummary`), `records.py` what every store does to a
record (checks, cuts, summary facts), `sqlite.py` the embedded implementation (one file in the data dir, written
directly by every process of the host), `factory.py` where it lives and how the config opens it, `otlp.py` decodes
OTLP/HTTP export requests into span records, `exporter.py` is the OpenTelemetry exporter that writes a process's
spans to a store.
"""
