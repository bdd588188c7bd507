"""The event log: its one schema and the columnar Parquet writer every shard owns."""
