"""Assets by domain, in data-flow order: data → dbt → feast → model → scoring → monitoring."""
