"""Example task modules, used by ``waypost dev``, the README and the tests."""
