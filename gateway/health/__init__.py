"""Provider health: circuit breakers and learned latency, shared across replicas."""
