"""Long operations as jobs: durable rows in the database, executed through Dramatiq."""
