import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

BACKENDS = ["numpy", "llvm"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every gradient test runs on every backend."""
    return request.param
