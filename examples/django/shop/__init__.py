"""A Django shop whose orders email a receipt through pgjobs (see ../README.md)."""
