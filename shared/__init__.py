"""The project's common library: schemas, settings, stream client, database and service clients.

Services import this package and nothing of one another.
"""
