"""The request pipeline: authorise, policy, probe, rank, cache, budget, attempts, price, ledger."""
