"""The bottom of the stack: domain types, errors, provider types, audio. Imports nothing else of ours."""
