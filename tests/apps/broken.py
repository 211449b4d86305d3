"""An app whose own import fails: the worker must show that error, not call the path bad."""

import importlib

importlib.import_module("no_such_dependency_for_pgjobs_tests")
