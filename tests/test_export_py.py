"""`.export("m.py")`: a module needing only NumPy, run where symbackprop cannot be imported."""
import json
import subprocess
import sys

import numpy as np
import pytest

import symbackprop as sb
import models

RUNNER = """
import sys, json, importlib.util
import numpy as np
sys.modules["symbackprop"] = None          # importing symbackprop now fails
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
args = [np.array(a) if isinstance(a, list) else a for a in json.loads(sys.argv[2])]
value, grads = mod.value_and_grad(*args)
grads = grads if isinstance(grads, tuple) else (grads,)
print(json.dumps({"forward": float(mod.forward(*args)), "value": float(value),
                  "grads": [np.asarray(g).tolist() for g in grads]}))
"""


def _run_exported(path, args):
    encoded = json.dumps([a.tolist() if isinstance(a, np.ndarray) else a for a in args])
    out = subprocess.run([sys.executable, "-c", RUNNER, str(path), encoded], capture_output=True, text=True,
                         check=True, cwd=path.parent)
    return json.loads(out.stdout)


@pytest.mark.parametrize("model,args,wrt", [
    (models.mlp, lambda r: [r.normal(size=(6, 5)), np.zeros(5), r.normal(size=(5, 3)), np.zeros(3),
                            r.normal(size=(4, 6)), np.eye(3)[[0, 1, 2, 0]]], ("W1", "b1", "W2", "b2")),
    (models.loop_with_helpers, lambda r: [r.normal(size=(3, 2)), r.normal(size=2), r.normal(size=(4, 3)),
                                          r.normal(size=(4, 2)), 3], ("W", "b")),
    (models.line, lambda r: [0.5, -1.0, 2.0, 3.0], "w"),
    (models.where_safe_log, lambda r: [np.array([-1.0, 2.0, 0.5])], 0),
])
def test_exported_module_matches_the_library(tmp_path, model, args, wrt):
    args = args(np.random.default_rng(0))
    f = sb.value_and_grad(model, wrt=wrt)
    value, grads = f(*args)
    grads = grads if isinstance(grads, tuple) else (grads,)
    path = tmp_path / f"{model.__name__}_grad.py"
    f.export(path, *args)
    text = path.read_text()
    # the code itself never refers back to us (the argument checks' messages name the docs)
    code = [l for l in text.split('"""', 2)[2].splitlines() if not l.startswith("_HOW = ")]
    assert "symbackprop" not in "\n".join(code)
    imports = [l for l in text.splitlines() if l.startswith(("import ", "from "))]
    assert set(imports) <= {"import numpy as np", "import math"}
    result = _run_exported(path, args)
    assert result["value"] == pytest.approx(value, rel=1e-12) and result["forward"] == pytest.approx(value, rel=1e-12)
    for got, want in zip(result["grads"], grads):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-14)


def test_export_without_args_uses_the_last_specialisation(tmp_path):
    f = sb.grad(models.matmul_2d)
    with pytest.raises(RuntimeError):
        f.export(tmp_path / "none.py")
    f(np.ones((2, 3)), np.ones((3, 2)))
    f.export(tmp_path / "last.py")
    assert "A: float64[2,3]" in (tmp_path / "last.py").read_text()
    with pytest.raises(ValueError, match=r"\.py, \.ll or \.so"):
        f.export(tmp_path / "m.txt")
