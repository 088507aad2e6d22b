"""The self-play producer: documents in, scored episode groups out onto the run's Redis stream."""
