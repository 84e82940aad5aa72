"""package.xml, setup.py and what colcon installs agree, and the ROS-workspace path works:
the repository, put in a workspace's src/, builds both packages with the documented colcon
command; every launch/config/weights file lands in share/cigocc_ros, every console entry
point is installed where `ros2 run` looks (lib/cigocc_ros/) and imports."""
from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _setup_kwargs() -> dict:
    """The literal keyword arguments of setup(...) in setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    return {kw.arg: kw.value for kw in call.keywords}


def entry_points() -> dict[str, str]:
    node = _setup_kwargs()["entry_points"]
    scripts = ast.literal_eval(node)["console_scripts"]
    return dict(s.replace(" ", "").split("=", 1) for s in scripts)


def test_every_console_entry_point_imports():
    eps = entry_points()
    assert {"cigocc", "cigocc_node"} <= set(eps)
    for name, target in eps.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_package_xml_declares_the_ros_packages_the_code_imports():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "cigocc_ros"
    assert root.find("export/build_type").text == "ament_python"
    declared = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    ros_packages = {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs",
                    "diagnostic_msgs", "nav_msgs", "rosgraph_msgs", "builtin_interfaces",
                    "cigocc_msgs", "tf2_ros", "message_filters", "cv_bridge", "rosbag2_py",
                    "launch", "launch_ros", "ament_index_python", "tf2_msgs"}
    imported = set()
    for py in list((REPO / "cigocc_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    aliases = {"tf2_ros": "tf2_ros_py"}  # Python module -> ROS package name
    missing = {aliases.get(m, m) for m in imported & ros_packages} - declared
    assert not missing, f"imported but not declared in package.xml: {sorted(missing)}"
    for dep in ("rclpy", "sensor_msgs", "visualization_msgs", "std_msgs", "geometry_msgs",
                "diagnostic_msgs", "cigocc_msgs"):
        assert dep in declared, dep


def test_message_package_is_its_own_interface_package():
    root = ET.parse(REPO / "msg" / "package.xml").getroot()
    assert root.findtext("name") == "cigocc_msgs"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert "rosidl_generate_interfaces" in (REPO / "msg" / "CMakeLists.txt").read_text()


@pytest.mark.slow
def test_colcon_workspace_build_installs_everything(tmp_path):
    """The README's ROS-workspace command, against the ROS wheels in this venv."""
    src = tmp_path / "ws" / "src" / "cigocc_ros"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    ws = tmp_path / "ws"
    venv = Path(sys.prefix)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    cmd = [str(venv / "bin" / "colcon"), "build", "--base-paths", "src", "src/cigocc_ros/msg",
           "--event-handlers", "console_cohesion-", "status-",
           "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
    res = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]

    share = ws / "install" / "cigocc_ros" / "share" / "cigocc_ros"
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for folder, patterns in {"launch": ["*.launch.py"], "config": ["*.yaml", "*.rviz"],
                             "weights": ["*"]}.items():
        for pattern in patterns:
            for f in (REPO / folder).glob(pattern):
                if f.name == ".gitkeep":
                    continue
                installed = share / folder / f.name
                assert installed.is_file(), f"{folder}/{f.name} is not installed by setup.py"
                assert installed.read_bytes() == f.read_bytes()
    assert (ws / "install" / "cigocc_ros" / "share" / "ament_index" / "resource_index"
            / "packages" / "cigocc_ros").is_file()

    # `ros2 run cigocc_ros <exe>` runs install/cigocc_ros/lib/cigocc_ros/<exe>.
    libdir = ws / "install" / "cigocc_ros" / "lib" / "cigocc_ros"
    for exe in entry_points():
        assert os.access(libdir / exe, os.X_OK), exe
    # The installed copy (not this checkout) runs, with the workspace's messages.
    site = next((ws / "install" / "cigocc_ros" / "lib").glob("python3*/site-packages"))
    msg_site = next((ws / "install" / "cigocc_msgs" / "lib").glob("python3*/site-packages"))
    run_env = dict(env, PYTHONPATH=os.pathsep.join([str(site), str(msg_site)]),
                   LD_LIBRARY_PATH=os.pathsep.join([str(ws / "install" / "cigocc_msgs" / "lib"),
                                                    env.get("LD_LIBRARY_PATH", "")]))
    probe = ("import cigocc_ros, cigocc_msgs.msg as m; print(cigocc_ros.__file__); "
             "print(m.SemanticOccupancy.LABEL_UNKNOWN)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=run_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.split()
    assert first.startswith(str(site)) and second == "255"
    res = subprocess.run([str(libdir / "cigocc"), "--help"], cwd=tmp_path, env=run_env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "usage: cigocc" in res.stdout, res.stderr
