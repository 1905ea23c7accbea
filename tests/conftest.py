import os
import sys
from pathlib import Path

# generated LLVM code fills buffers with NaN bytes before freeing them: a use after free fails loudly
os.environ.setdefault("SYMBACKPROP_POISON_FREED", "1")

import pytest

sys.path.insert(0, str(Path(__file__).parent))

BACKENDS = ["numpy", "llvm"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every gradient test runs on every backend."""
    return request.param
