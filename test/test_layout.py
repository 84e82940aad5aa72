"""The package's layout rules (docs/architecture.md), checked on the source itself:
the core imports none of ros/, bag/, training/, cli/; those three import only the core (and
themselves); no command module imports another; no import circle; `cigocc --help` imports
neither torch nor rclpy."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "cigocc_ros"
ADAPTERS = ("ros", "bag", "training")
CLI_HELPERS = {"cigocc_ros.cli", "cigocc_ros.cli.main", "cigocc_ros.cli.__main__", "cigocc_ros.cli.args",
               "cigocc_ros.cli.play_args"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, source: str | None = None) -> set[str]:
    """Every cigocc_ros module `name` imports, anywhere in the file (function bodies too)."""
    path = MODULES.get(name, Path(name.replace(".", "/") + ".py"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES}
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def area(name: str) -> str:
    """'core', or the adapter / cli folder a module belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in (*ADAPTERS, "cli") else "core"


def test_every_module_is_seen():
    assert {"cigocc_ros.device", "cigocc_ros.cli.main", "cigocc_ros.training.trainer",
            "cigocc_ros.bag.session", "cigocc_ros.ros.node", "cigocc_ros.evaluation.split"} <= set(MODULES)
    assert area("cigocc_ros.evaluation.split") == "core"  # scoring needs no trainer (docs/architecture.md)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in graph.items():
        if area(name) == "cli":
            continue
        bad += [f"{name} ({area(name)}) imports {d} ({area(d)})" for d in deps if area(d) not in ("core", area(name))]
    return bad


def command_violations(graph: dict[str, set[str]]) -> list[str]:
    def is_command(n: str) -> bool:
        return area(n) == "cli" and n not in CLI_HELPERS

    return [f"{n} imports {d}" for n, deps in graph.items() if is_command(n) for d in sorted(deps) if is_command(d)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_core_imports_no_adapter_and_adapters_only_the_core():
    bad = layer_violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_command_imports_another():
    bad = command_violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_command_table_names_real_modules():
    from cigocc_ros.cli.main import COMMANDS

    for name, (module, _) in COMMANDS.items():
        assert f"cigocc_ros.cli.{module}" in MODULES, f"command {name}: no module cli/{module}.py"


def test_the_checks_catch_what_they_forbid():
    # A function-local relative import is seen like a top-level one.
    deps = imports_of("cigocc_ros.evaluation.ssc_metric", "def f():\n    from ..ros import node\n    from .. import viz\n")
    assert deps == {"cigocc_ros.ros.node", "cigocc_ros.viz"}
    assert layer_violations({"cigocc_ros.evaluation.ssc_metric": deps}) == [
        "cigocc_ros.evaluation.ssc_metric (core) imports cigocc_ros.ros.node (ros)"]
    assert layer_violations({"cigocc_ros.bag.play": {"cigocc_ros.training.trainer"}})
    assert not layer_violations({"cigocc_ros.cli.train": {"cigocc_ros.training.trainer", "cigocc_ros.bag.play"}})
    assert command_violations({"cigocc_ros.cli.eval": {"cigocc_ros.cli.train", "cigocc_ros.cli.args"}}) == [
        "cigocc_ros.cli.eval imports cigocc_ros.cli.train"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("argv", [["--help"], ["no-such-command"]])
def test_cigocc_help_imports_neither_torch_nor_rclpy(argv, ros_env):
    code = ("import sys\nfrom cigocc_ros.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'rclpy', 'numpy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], env=ros_env, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout + res.stderr
    if argv == ["--help"]:
        assert "kitti-to-bag" in res.stdout and "train" in res.stdout
    else:
        assert "invalid choice" in res.stderr
