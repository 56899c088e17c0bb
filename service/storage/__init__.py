"""The PostgreSQL adapter: all SQL of relbank lives in this package."""
