"""Typed HTTP clients, one per service, plus the OpenAI-compatible chat client every role uses."""
