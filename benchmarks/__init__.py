"""asv benchmarks of fastmvn: every public function over sizes, batch sizes, dtypes and backends."""
