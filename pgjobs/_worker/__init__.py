"""The worker runtime. Private: the public face is :class:`pgjobs.Server`."""

from .worker import Worker

__all__ = ["Worker"]
