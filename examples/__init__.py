"""Example applications for pgjobs (see examples/app.py)."""
