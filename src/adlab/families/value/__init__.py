"""Customer value: forecast each customer's next-period spend from a transaction log and rate customers."""
