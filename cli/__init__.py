"""``pop``: the command line. It starts the local stack and talks to the gateway over HTTP."""
