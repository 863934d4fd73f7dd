"""The job store: SQLAlchemy models, the database connection, and every query."""
