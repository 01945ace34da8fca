"""The cost ledger: records, the durable store with its spool, rollups and reports."""
