"""A FastAPI shop on pgjobs (see app.py)."""
