"""Every registered primitive has a rule in every backend's table, or declares that it needs none."""
import pytest

import symbackprop  # noqa: F401  (registers every primitive)
from symbackprop.backends.llvm.lower import LOWERINGS
from symbackprop.backends.numpy.rules import RULES
from symbackprop.primitives.registry import PRIMITIVES, Primitive

#: each backend's table of rules, keyed by primitive class
BACKEND_TABLES = {"numpy": RULES, "llvm": LOWERINGS}


def missing_rules(primitives, tables):
    """(primitive name, backend) for each primitive a backend has no rule for.

    A primitive the compiler always rewrites into others first says so with `rewritten_away = True`.
    """
    return [(name, backend) for name, prim in sorted(primitives.items()) if not prim.rewritten_away
            for backend, table in sorted(tables.items()) if type(prim) not in table]


def test_primitives_are_registered():
    assert len(PRIMITIVES) >= 18


@pytest.mark.parametrize("backend", sorted(BACKEND_TABLES))
def test_every_primitive_has_a_rule(backend):
    missing = missing_rules(PRIMITIVES, {backend: BACKEND_TABLES[backend]})
    assert not missing, ("primitives without a rule, as (primitive, backend): "
                         + ", ".join(f"({name}, {b})" for name, b in missing)
                         + "; add the rule, or set rewritten_away = True on a primitive no backend ever sees")


@pytest.mark.parametrize("backend", sorted(BACKEND_TABLES))
def test_tables_are_keyed_by_registered_primitive_classes(backend):
    registered = {type(prim) for prim in PRIMITIVES.values()}
    strays = [key for key in BACKEND_TABLES[backend] if key not in registered]
    assert not strays, f"{backend} has rules under keys that are not registered primitive classes: {strays}"


def _unregistered(name, rewritten_away=False):
    """A primitive instance made the way @primitive makes one, but left out of PRIMITIVES."""
    cls = type(name.title(), (Primitive,), {"name": name, "rewritten_away": rewritten_away})
    return cls()


def test_a_primitive_without_rules_is_named_with_each_backend():
    prims = dict(PRIMITIVES, unlowered=_unregistered("unlowered"))
    assert missing_rules(prims, BACKEND_TABLES) == [("unlowered", "llvm"), ("unlowered", "numpy")]


def test_a_primitive_rewritten_away_needs_no_rule():
    prims = dict(PRIMITIVES, sugar=_unregistered("sugar", rewritten_away=True))
    assert missing_rules(prims, BACKEND_TABLES) == []
