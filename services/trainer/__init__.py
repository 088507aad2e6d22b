"""The trainer: consumes scored groups from Redis, updates the policy, checkpoints, asks for a swap."""
