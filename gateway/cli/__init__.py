"""The ``audio-gateway`` command line."""
