"""Static checks of launch/cigocc.launch.py against the package (the `launch` package is not
installed here; on a ROS machine `ros2 launch cigocc_ros cigocc.launch.py --show-args` is the
live check): executables are entry points, named files exist and are installed, every
LaunchConfiguration is declared, parameters and remappings match the node, the parameter file
matches NodeConfig, and the RViz layout listens to the node's topics."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import setuptools
import yaml

from cigocc_ros.config import NodeConfig, load_node_config

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch" / "cigocc.launch.py"
PACKAGE = "cigocc_ros"


@pytest.fixture(scope="module")
def tree():
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


@pytest.fixture(scope="module")
def setup_kwargs():
    """The keyword arguments setup.py passes to setuptools.setup (globs expanded from the repo)."""
    captured = {}
    real = setuptools.setup
    cwd = os.getcwd()
    try:
        setuptools.setup = lambda **kw: captured.update(kw)
        os.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real
        os.chdir(cwd)
    return captured


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def kwarg(call, name):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def const(node):
    return node.value if isinstance(node, ast.Constant) else None


def test_executables_are_entry_points(tree, setup_kwargs):
    scripts = dict(
        (s.split("=")[0].strip(), s.split("=")[1].strip()) for s in setup_kwargs["entry_points"]["console_scripts"]
    )
    deps = {e.text for e in ET.parse(REPO / "package.xml").getroot() if e.tag in ("depend", "exec_depend")}
    nodes = calls(tree, "Node")
    assert nodes, "the launch file starts no Node"
    for n in nodes:
        package, executable = const(kwarg(n, "package")), const(kwarg(n, "executable"))
        assert package and executable, "package and executable must be literal strings"
        if package == PACKAGE:
            assert executable in scripts, f"{executable} is not a console_scripts entry point"
            module, func = scripts[executable].split(":")
            assert callable(getattr(importlib.import_module(module), func))
        else:
            assert package in deps, f"{package} is started by the launch file but not an exec_depend"


def test_every_launch_configuration_is_declared(tree):
    declared = {const(c.args[0]) for c in calls(tree, "DeclareLaunchArgument")}
    used = {const(c.args[0]) for c in calls(tree, "LaunchConfiguration")}
    assert used - declared == set(), f"undeclared: {used - declared}"
    assert {"mode", "weights", "config", "device", "rviz", "use_sim_time"} <= declared
    for c in calls(tree, "DeclareLaunchArgument"):
        assert const(kwarg(c, "description")), f"{const(c.args[0])} has no description"


def test_named_files_come_from_resources_and_are_installed(tree, setup_kwargs):
    """The launch file finds its files through cigocc_ros.resources (no lookup of its own), and
    the files those functions name exist and are installed into share/cigocc_ros."""
    from cigocc_ros import resources

    installed = {}
    for dest, files in setup_kwargs["data_files"]:
        for f in files:
            installed[f] = dest
    assert installed.get("launch/cigocc.launch.py") == f"share/{PACKAGE}/launch"
    assert not calls(tree, "FindPackageShare") and not calls(tree, "PathJoinSubstitution")
    used = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", None) == "resources"}
    assert {"node_params_file", "rviz_layout_file"} <= used
    for fn in used:
        path = getattr(resources, fn)()
        rel = path.relative_to(REPO).as_posix()
        assert path.is_file(), f"{rel} is named by the launch file but missing"
        assert installed.get(rel) == f"share/{PACKAGE}/{Path(rel).parent}", f"{rel} is not installed by setup.py"


def test_parameters_and_remappings_match_the_node(tree):
    from cigocc_ros.ros.node import STREAMS_STEREO

    node = next(c for c in calls(tree, "Node") if const(kwarg(c, "package")) == PACKAGE)
    params = kwarg(node, "parameters").elts
    keys = {const(k) for p in params if isinstance(p, ast.Dict) for k in p.keys}
    fields = {f.name for f in dataclasses.fields(NodeConfig)}
    assert keys - {"use_sim_time"} <= fields, f"not node parameters: {keys - fields - {'use_sim_time'}}"
    assert {"weights", "device", "backend", "stereo", "use_sim_time", "left_transport", "right_transport"} <= keys
    remapped = {const(t.elts[0]) for t in kwarg(node, "remappings").elts}
    assert remapped == {topic for _, topic in STREAMS_STEREO}


def test_parameter_file_matches_node_config():
    data = yaml.safe_load((REPO / "config" / "cigocc.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    fields = {f.name for f in dataclasses.fields(NodeConfig)}
    # camera_from_grid is left unset (an empty list has no ROS parameter type)
    assert set(params) == fields - {"camera_from_grid"}
    assert load_node_config(REPO / "config" / "cigocc.yaml") == NodeConfig()


def test_rviz_layout_listens_to_the_node():
    rviz = yaml.safe_load((REPO / "rviz" / "cigocc.rviz").read_text())
    topics = {d["Class"]: d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"]}
    assert topics["rviz_default_plugins/MarkerArray"] == "/cigocc_node/markers"
    assert topics["rviz_default_plugins/PointCloud2"] == "/cigocc_node/cloud"
    assert topics["rviz_default_plugins/Camera"].endswith("/image_rect")
    assert topics["rviz_default_plugins/Map"] == "/cigocc_node/costmap"
