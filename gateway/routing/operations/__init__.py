"""What each operation plugs into the pipeline: its input checks, units, cache identity and provider call."""
