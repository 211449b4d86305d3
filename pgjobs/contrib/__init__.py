"""Framework integrations; each is imported only by applications that use it."""
