"""Like :mod:`tests.apps.broken`, but the missing module's name is a prefix of this one's."""

import importlib

importlib.import_module("tests.apps.broke")
