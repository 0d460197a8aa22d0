"""Example workflows (run by the tests, so they keep working)."""
