"""A non-editable wheel install finds its templates and docs: fresh venv, run an example and `symbackprop docs`
from another directory."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def test_wheel_install_runs_the_quickstart_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO))
    (wheel,) = wheels.glob("symbackprop-*.whl")
    venv = tmp_path / "venv"
    # dependencies come from this interpreter; symbackprop itself only from the wheel
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    python = venv / "bin" / "python"
    # --ignore-installed: a symbackprop in the outer site-packages must not satisfy the requirement
    run(str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REPO / "examples" / "quickstart.py", elsewhere)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run(str(python), "-c", "import symbackprop, sys; print(symbackprop.__file__)", cwd=elsewhere, env=env)
    assert str(venv) in where.stdout, where.stdout
    out = run(str(python), "quickstart.py", cwd=elsewhere, env=env)
    assert "def value_and_grad(W1, b1, W2, b2, x, y):" in out.stdout
    assert "d_W1 = np.dot(x.T, " in out.stdout
    # the documentation compile errors point to is in the wheel, printed by the console script
    docs = run(str(venv / "bin" / "symbackprop"), "docs", "language", cwd=elsewhere, env=env)
    assert docs.stdout == (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    topics = run(str(venv / "bin" / "symbackprop"), "docs", cwd=elsewhere, env=env)
    for topic in ("language", "training", "cli", "llvm"):
        assert f"  {topic} " in topics.stdout, topics.stdout
