"""The gateway: the REST front door for runs, checkpoints and the generator's weights."""
