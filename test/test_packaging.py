"""package.xml, setup.py and what colcon installs agree, and every install path works:
- the repository, put in a workspace's src/, builds both packages with a plain `colcon build`
  (no --symlink-install: the usual build on a vehicle, where the code runs from site-packages,
  away from the checkout); every launch/config/rviz/weights file lands in share/cigocc_ros and
  the package data (experiment configs, class table, message definition) in site-packages, every
  console entry point is installed where `ros2 run` looks (lib/cigocc_ros/) and imports, and the
  installed `cigocc_node`, started with the install space's own environment only, turns a real
  KITTI frame into a SemanticOccupancy message with the shipped weights it finds in share/;
- `colcon build --symlink-install` (a developer's workspace): the code and every file resolve
  back to the source folder;
- a wheel carries the package data inside the package and the share files as data files, and,
  installed into a prefix, finds both.
The checkout itself is test_resources.py's."""
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
from test_resources import clean_env, probe  # the same probe as the copied layouts

from cigocc_ros.child_process import die_with_parent

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


# What the library reads for itself, inside the installed package (setup.py's package_data).
PACKAGE_DATA = ("semantic-kitti.yaml", "ATTRIBUTION.md", "bag/SemanticOccupancy.msg",
                *sorted(f"experiments/{f.name}" for f in (REPO / "cigocc_ros" / "experiments").glob("*.yaml")))
# What the ROS side reads, in share/cigocc_ros (setup.py's data_files): folder -> patterns.
SHARE_FILES = {"launch": ["*.launch.py"], "config": ["*.yaml"], "rviz": ["*.rviz"], "weights": ["*", "seg2d/*"]}


def copy_checkout(dest: Path) -> Path:
    """The files git tracks (and untracked ones it does not ignore) copied to `dest`, links as
    links: what a fresh clone has."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel, follow_symlinks=False)
    return dest


def assert_package_data(package: Path) -> None:
    """The installed package holds every package-data file as a plain file with the source's bytes."""
    for rel in PACKAGE_DATA:
        installed = package / rel
        assert installed.is_file() and not installed.is_symlink(), f"cigocc_ros/{rel} is not installed"
        assert installed.read_bytes() == (REPO / "cigocc_ros" / rel).read_bytes(), rel


def share_files() -> list[str]:
    """Every share file, relative to the repository (and to share/cigocc_ros)."""
    return sorted(f.relative_to(REPO).as_posix() for folder, patterns in SHARE_FILES.items()
                  for pattern in patterns for f in (REPO / folder).glob(pattern) if f.is_file() and f.name != ".gitkeep")


def colcon_build(ws: Path, *args: str) -> None:
    venv = Path(sys.prefix)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    cmd = [str(venv / "bin" / "colcon"), "build", *args, "--event-handlers", "console_cohesion-", "status-",
           "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
    res = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The repository copied into <ws>/src and built with a plain `colcon build`."""
    tmp_path = tmp_path_factory.mktemp("colcon")
    copy_checkout(tmp_path / "ws" / "src" / "cigocc_ros")
    ws = tmp_path / "ws"
    colcon_build(ws, "--base-paths", "src", "src/cigocc_ros/msg")
    assert not (ws / "install" / "cigocc_ros" / "share" / "cigocc_ros" / "package.xml").is_symlink()
    return ws


def workspace_env(ws: Path) -> dict:
    """The environment of `source <ws>/install/setup.bash` on top of this one without any
    PYTHONPATH (so not this checkout): what a vehicle's shell has."""
    venv = Path(sys.prefix)
    base = clean_env(CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    out = subprocess.run(["bash", "-c", f"source {ws / 'install' / 'setup.bash'} && env -0"], env=base,
                         capture_output=True, timeout=120, check=True).stdout.decode()
    env = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    assert str(REPO) not in env.get("PYTHONPATH", ""), env.get("PYTHONPATH")
    return env


@pytest.mark.slow
@pytest.mark.integration
def test_colcon_workspace_build_installs_everything(workspace, tmp_path):
    """The README's ROS-workspace command, against the ROS wheels in this venv."""
    ws = workspace
    venv = Path(sys.prefix)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    share = ws / "install" / "cigocc_ros" / "share" / "cigocc_ros"
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for rel in share_files():
        assert (share / rel).is_file(), f"{rel} is not installed by setup.py"
        assert (share / rel).read_bytes() == (REPO / rel).read_bytes()
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
    assert_package_data(site / "cigocc_ros")
    res = subprocess.run([str(libdir / "cigocc"), "--help"], cwd=tmp_path, env=run_env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "usage: cigocc" in res.stdout, res.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_installed_node_runs_from_the_install_space_only(workspace, tmp_path, kitti_samples):
    """The plain install's `cigocc_node` (its environment from install/setup.bash, cwd outside
    the checkout, weights:="" = the shipped weights) answers a real KITTI frame. Before
    resources.py it refused to start: "cannot read class table" (config/ was looked for next to
    site-packages)."""
    import random
    import time

    import cv2
    import numpy as np
    import rclpy
    from cigocc_msgs.msg import SemanticOccupancy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from cigocc_ros.data.semantic_kitti import read_calib

    ws = workspace
    env = workspace_env(ws)
    site = next((ws / "install" / "cigocc_ros" / "lib").glob("python3*/site-packages"))
    out = probe(env, tmp_path)
    assert out["package"].startswith(str(site)), out  # the installed copy, not the checkout
    assert out["class_table"] == str(site / "cigocc_ros" / "semantic-kitti.yaml")
    assert out["node_params"] == str(ws / "install" / "cigocc_ros" / "share" / "cigocc_ros" / "config" / "cigocc.yaml")

    seq = kitti_samples / "sequences" / "00"
    calib = read_calib(seq / "calib.txt")
    T = np.eye(4)
    T[:3, :4] = calib["Tr"]
    domain = random.Random(os.getpid() ^ time.time_ns()).randint(1, 200)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               RCUTILS_LOGGING_BUFFERED_STREAM="0", OMP_NUM_THREADS="2")
    exe = ws / "install" / "cigocc_ros" / "lib" / "cigocc_ros" / "cigocc_node"
    matrix = "[" + ",".join(repr(float(v)) for v in T.ravel()) + "]"
    log = tmp_path / "node.log"
    node_proc = subprocess.Popen(die_with_parent([str(exe), "--ros-args", "-p", "device:=cpu", "-p",
                                                  f"camera_from_grid:={matrix}"]),
                                 cwd=tmp_path, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, args=[])
    got = []
    try:
        node = Node("installed_feeder", context=ctx)
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        pub_img = node.create_publisher(Image, "left/image", qos)
        pub_info = node.create_publisher(CameraInfo, "left/camera_info", qos)
        node.create_subscription(SemanticOccupancy, "/cigocc_node/occupancy", got.append, qos)
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.time() + 240
        while "listening on" not in log.read_text():
            assert node_proc.poll() is None, f"installed node exited {node_proc.returncode}:\n{log.read_text()}"
            assert time.time() < deadline, f"installed node not ready:\n{log.read_text()}"
            executor.spin_once(timeout_sec=0.2)
        assert "share/cigocc_ros/weights/cigocc_lite.safetensors" in log.read_text(), log.read_text()
        gray = cv2.imread(str(seq / "image_0" / "000000.png"), cv2.IMREAD_UNCHANGED)
        P = np.asarray(calib["P0"], dtype=np.float64).reshape(3, 4)
        for _attempt in range(3):
            while node.count_subscribers("left/image") < 1 and time.time() < deadline:
                executor.spin_once(timeout_sec=0.2)
            stamp = time.time_ns()
            info = CameraInfo(height=gray.shape[0], width=gray.shape[1], k=[float(v) for v in P[:, :3].ravel()],
                              p=[float(v) for v in P.ravel()])
            img = Image(height=gray.shape[0], width=gray.shape[1], encoding="mono8", step=gray.shape[1])
            img.data = gray.tobytes()
            for msg in (info, img):
                msg.header.frame_id = "camera_gray_left"
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            time.sleep(0.5)  # let the endpoints match before the first message
            pub_info.publish(info)
            pub_img.publish(img)
            end = time.time() + 60
            while time.time() < end and not got:
                executor.spin_once(timeout_sec=0.2)
            if got:
                break
        assert got, f"no occupancy from the installed node:\n{log.read_text()[-3000:]}"
        occ = got[0]
        assert (occ.size_x, occ.size_y, occ.size_z) == (256, 256, 32) and occ.header.frame_id == "velodyne"
        assert occ.model_id.startswith("lite@") and len(occ.labels) == 256 * 256 * 32
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
        if node_proc.poll() is None:
            node_proc.terminate()
            node_proc.wait(30)
    assert node_proc.returncode == 0, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()


def test_symlink_install_resolves_to_the_source(tmp_path):
    """`colcon build --symlink-install` (a developer's workspace; cigocc_ros alone: an
    ament_python package needs no compiler): share/ holds links into src/, the code runs from
    the source folder, and every file, package data included, resolves there."""
    ws = tmp_path / "ws"
    src = copy_checkout(ws / "src" / "cigocc_ros")
    colcon_build(ws, "--symlink-install", "--base-paths", "src", "--packages-select", "cigocc_ros")
    share = ws / "install" / "cigocc_ros" / "share" / "cigocc_ros"
    for rel in share_files():
        assert (share / rel).is_symlink() and (share / rel).resolve() == (src / rel).resolve(), rel
    out = probe(workspace_env(ws), tmp_path)
    assert Path(out["package"]).resolve().is_relative_to(src / "cigocc_ros"), out["package"]
    expected = {"class_table": "cigocc_ros/semantic-kitti.yaml", "lite": "cigocc_ros/experiments/lite.yaml",
                "msg": "cigocc_ros/bag/SemanticOccupancy.msg", "node_params": "config/cigocc.yaml",
                "rviz": "rviz/cigocc.rviz", "weights": "weights/cigocc_lite.safetensors"}
    for key, rel in expected.items():
        assert Path(out[key]).resolve() == (src / rel).resolve(), (key, out[key])


def test_wheel_carries_package_data_and_share_files(tmp_path):
    """A wheel built from a fresh clone holds the package data inside the package (the .msg
    link's content, not the link) and the share files as data files; installed into a prefix
    (no ROS, no ament index) it finds both."""
    import zipfile

    src = copy_checkout(tmp_path / "src")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    res = subprocess.run(pip[:3] + ["wheel", *pip[3:], "--no-deps", "--no-build-isolation", "-w",
                                    str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("cigocc_ros-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"cigocc_ros/{rel}" for rel in PACKAGE_DATA} <= names
    data = "-".join(wheel.name.split("-")[:2]) + ".data/data/share/cigocc_ros"  # <name>-<version>.data
    assert {f"{data}/{rel}" for rel in share_files()} <= names, sorted(n for n in names if ".data/" in n)

    # Into an empty environment of its own: `pip install --prefix` from this one would first
    # uninstall this environment's cigocc_ros (the editable checkout) as an older version.
    prefix = tmp_path / "prefix"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    res = subprocess.run(pip[:3] + ["--python", str(prefix / "bin" / "python"), "install", *pip[3:], "--no-deps",
                                    "--no-index", str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    site = next((prefix / "lib").glob("python3*/site-packages"))
    assert_package_data(site / "cigocc_ros")
    out = probe(clean_env(PYTHONPATH=str(site), AMENT_PREFIX_PATH=""), tmp_path)
    assert out["package"].startswith(str(site)), out["package"]
    assert out["class_table"] == str(site / "cigocc_ros" / "semantic-kitti.yaml")
    assert out["msg"] == str(site / "cigocc_ros" / "bag" / "SemanticOccupancy.msg")
    share = prefix / "share" / "cigocc_ros"
    assert (out["node_params"], out["rviz"], out["weights"]) == (
        str(share / "config" / "cigocc.yaml"), str(share / "rviz" / "cigocc.rviz"),
        str(share / "weights" / "cigocc_lite.safetensors"))
