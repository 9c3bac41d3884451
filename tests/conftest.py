"""Test setup: notebooks executed by nbval write their results to a temporary folder, not into book/results."""
import os
import tempfile

os.environ.setdefault("AAE_RESULTS_DIR", tempfile.mkdtemp(prefix="aae-results-"))
