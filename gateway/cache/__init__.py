"""The result cache: keys, single-flight across replicas, and the payload codec."""
