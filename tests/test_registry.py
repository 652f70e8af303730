import pytest

import objssl
from objssl.registry import PluginLoadError, Registry, UnknownNameError, all_registries


def _fresh(kind, group=None):
    # registries are global by kind; give each test a unique one
    import uuid

    return Registry(f"{kind}-{uuid.uuid4().hex[:6]}", entry_point_group=group)


def test_register_get_build_and_names():
    reg = _fresh("thing")

    @reg.register("double")
    def double(x):
        return 2 * x

    reg.register("triple", lambda x: 3 * x)
    assert reg.get("double") is double
    assert reg.build("triple", 5) == 15
    assert reg.names() == ["double", "triple"]
    assert "double" in reg and "nope" not in reg


def test_register_uses_object_name_and_rejects_duplicates():
    reg = _fresh("thing")

    @reg.register()
    class Foo:
        pass

    assert reg.get("Foo") is Foo
    with pytest.raises(ValueError, match="already registered"):
        reg.register("Foo", object())
    reg.register("Foo", int, override=True)
    assert reg.get("Foo") is int


def test_typo_lists_known_names_and_suggests():
    reg = _fresh("method")
    for n in ("byol", "soco", "slotcon"):
        reg.register(n, object())
    with pytest.raises(UnknownNameError) as err:
        reg.get("byl")
    msg = str(err.value)
    assert "unknown" in msg and "'byl'" in msg
    assert "Did you mean 'byol'" in msg
    assert "byol, slotcon, soco" in msg


def test_duplicate_registry_kind_rejected():
    reg = _fresh("dup")
    with pytest.raises(ValueError):
        Registry(reg.kind)


def test_project_registries_hold_builtins():
    regs = all_registries()
    for kind in ("backbone", "neck", "head", "loss", "objective", "method", "proposal source", "export target"):
        assert kind in regs
    assert "byol" in objssl.METHODS
    assert {"mlp", "mlp2d"} <= set(objssl.HEADS.names())
    assert "byol" in objssl.LOSSES
    assert "timm" in objssl.EXPORTERS
    assert {"byol_global", "soco_boxes", "soco_c4_boxes", "slotcon_pixel", "slotcon_slots"} <= set(objssl.OBJECTIVES.names())
    assert "compose" in objssl.METHODS


def test_methods_and_objectives_come_from_entry_points():
    assert objssl.METHODS.entry_point_group == "objssl.methods"
    assert objssl.OBJECTIVES.entry_point_group == "objssl.objectives"


class _FakeEP:
    def __init__(self, name, value, loader, dist="fake-dist"):
        self.name, self.value, self._loader = name, value, loader
        self.dist = type("D", (), {"name": dist})()

    def load(self):
        return self._loader()


def _boom():
    raise ImportError("No module named 'missing_dependency'")


def test_entry_points_lazy_builtin_wins_and_broken_plugin_named(monkeypatch):
    reg = _fresh("source", group="objssl.test-group")
    reg.register("grid", "builtin-grid")
    loaded = []

    def good():
        loaded.append(1)
        return "plugin-object"

    eps = [
        _FakeEP("good", "pkg.mod:Good", good),
        _FakeEP("grid", "other.mod:Grid", lambda: "plugin-grid"),
        _FakeEP("broken", "broken_pkg.mod:Source", _boom, dist="broken-dist"),
    ]
    from objssl import registry as registry_module

    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda group: eps if group == reg.entry_point_group else [])
    names = reg.names()
    assert names == ["broken", "good", "grid"]
    assert loaded == []  # listing imports nothing
    assert reg.get("grid") == "builtin-grid"  # built-in wins the clash
    assert "ignored" in reg.load_errors["grid"]
    assert reg.get("good") == "plugin-object" and loaded == [1]
    assert reg.plugin_origin("good") == "fake-dist: pkg.mod:Good"
    with pytest.raises(PluginLoadError) as err:
        reg.get("broken")
    assert "broken" in str(err.value) and "broken-dist" in str(err.value)
    assert "missing_dependency" in str(err.value)
    assert "broken" not in reg.names()  # listing still works, without the broken one
    assert "broken" in reg.load_errors


def test_autoload_can_be_disabled(monkeypatch):
    reg = _fresh("source", group="objssl.test-group2")
    from objssl import registry as registry_module

    monkeypatch.setattr(
        registry_module.metadata, "entry_points", lambda group: [_FakeEP("good", "a:b", lambda: 1)]
    )
    monkeypatch.setenv("OBJSSL_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert reg.names() == []
    with pytest.raises(UnknownNameError):
        reg.get("good")
