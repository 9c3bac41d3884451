"""Test setup: quick mode unless AAE_MODE is set explicitly (so a CUDA machine never trains at paper scale by
surprise), and notebooks executed by nbval write their results to a temporary folder, not into book/results."""
import os
import tempfile

os.environ.setdefault("AAE_MODE", "quick")
os.environ.setdefault("AAE_RESULTS_DIR", tempfile.mkdtemp(prefix="aae-results-"))
