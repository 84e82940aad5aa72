"""cigocc_ros.resources finds the package's share files (node parameters, RViz layout, shipped
weights) the same way from a checkout, a plain install prefix (what `colcon build` without
--symlink-install makes), the ament index and $CIGOCC_SHARE; the package data (experiment configs,
class table, message definition) is read from inside the package in every one of them.

The install layouts are made by copying the package (no build: fast); test_packaging.py builds a
real workspace (plain and --symlink-install) and a wheel, and runs what they install."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cigocc_ros import resources

REPO = Path(__file__).resolve().parent.parent
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"

PROBE = """
import json
from cigocc_ros import resources
from cigocc_ros.bag.types import occupancy_msg_path, typestore
from cigocc_ros.classes import CLASS_TABLE_FILE, load_class_table
from cigocc_ros.config import load_experiment, load_node_config, resolve_config_path
print(json.dumps({
    "package": resources.__file__,
    "class_table": str(CLASS_TABLE_FILE),
    "lite": str(resolve_config_path("lite")),
    "msg": str(occupancy_msg_path()),
    "node_params": str(resources.node_params_file()),
    "weights": str(resources.shipped_weights_file()),
    "rviz": str(resources.rviz_layout_file()),
    "classes": len(load_class_table().names),
    "experiment": load_experiment("lite").name,
    "device": load_node_config().device,
    "msg_registered": "cigocc_msgs/msg/SemanticOccupancy" in typestore().fielddefs,
}))
"""


def copy_share(dest: Path) -> Path:
    """What setup.py's data_files put into share/cigocc_ros."""
    for folder in ("config", "rviz", "weights"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns(".gitkeep"))
    return dest


def copy_package(site: Path) -> Path:
    """The Python package with its package data (links, like bag/SemanticOccupancy.msg, copied as
    files, as a build does)."""
    shutil.copytree(REPO / "cigocc_ros", site / "cigocc_ros", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def clean_env(**extra: str) -> dict:
    """This environment without anything that points at this checkout's files, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIGOCC_SHARE", "CIGOCC_WEIGHTS")}
    return base | {"OMP_NUM_THREADS": "1"} | extra


def probe(env: dict, cwd: Path) -> dict:
    """PROBE's answer, run in exactly `env` (also used by test_packaging.py on real installs)."""
    import json

    # -I would also drop the venv's site-packages; -P keeps cwd off sys.path, PYTHONPATH leads.
    res = subprocess.run([sys.executable, "-P", "-c", PROBE], cwd=cwd, capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["classes"] == 20 and out["msg_registered"], out
    return out


def run_probe(pythonpath: Path, cwd: Path, **env: str) -> dict:
    return probe(clean_env(PYTHONPATH=str(pythonpath), **env), cwd)


def test_checkout_finds_its_own_files():
    assert resources.node_params_file() == REPO / "config" / "cigocc.yaml"
    assert resources.rviz_layout_file() == REPO / "rviz" / "cigocc.rviz"
    assert resources.shipped_weights_file() == REPO / "weights" / resources.SHIPPED_WEIGHTS
    assert resources.search_roots()[0] == ("checkout", REPO)


def test_package_data_is_inside_the_package():
    """What the library reads for itself is beside the code that reads it; the message
    definition is a link to the one source the cigocc_msgs package builds from."""
    from cigocc_ros.bag.types import PACKAGED_MSG, occupancy_msg_path
    from cigocc_ros.classes import CLASS_TABLE_FILE
    from cigocc_ros.config import EXPERIMENTS_DIR, resolve_config_path

    package = REPO / "cigocc_ros"
    assert resolve_config_path("full") == EXPERIMENTS_DIR / "full.yaml" == package / "experiments" / "full.yaml"
    assert {"lite", "full", "real"} <= {f.stem for f in EXPERIMENTS_DIR.glob("*.yaml")}
    assert CLASS_TABLE_FILE == package / "semantic-kitti.yaml"
    assert occupancy_msg_path() == PACKAGED_MSG == package / "bag" / "SemanticOccupancy.msg"
    assert PACKAGED_MSG.is_symlink(), "a copy of the .msg would drift from msg/msg/: keep the link"
    assert PACKAGED_MSG.resolve() == REPO / "msg" / "msg" / "SemanticOccupancy.msg"


def test_plain_install_prefix_finds_share(tmp_path):
    """The layout of `colcon build` without --symlink-install: code in
    <prefix>/lib/pythonX.Y/site-packages, files in <prefix>/share/cigocc_ros. The old lookup
    (config/ beside the package folder) failed here: the node could not read its class table."""
    prefix = tmp_path / "install" / "cigocc_ros"
    site = copy_package(prefix / "lib" / PY / "site-packages")
    share = copy_share(prefix / "share" / "cigocc_ros")
    out = run_probe(site, tmp_path, AMENT_PREFIX_PATH="")
    assert out["package"].startswith(str(site))
    package = site / "cigocc_ros"
    assert out["class_table"] == str(package / "semantic-kitti.yaml")
    assert out["lite"] == str(package / "experiments" / "lite.yaml")
    assert out["msg"] == str(package / "bag" / "SemanticOccupancy.msg")
    assert out["node_params"] == str(share / "config" / "cigocc.yaml")
    assert out["weights"] == str(share / "weights" / resources.SHIPPED_WEIGHTS)
    assert out["rviz"] == str(share / "rviz" / "cigocc.rviz")
    assert (out["classes"], out["experiment"], out["device"], out["msg_registered"]) == (20, "lite", "auto", True)


def test_ament_index_finds_share_of_another_prefix(tmp_path):
    """Code installed apart from its share folder (e.g. a wheel), the share found through
    AMENT_PREFIX_PATH's resource index."""
    pytest.importorskip("ament_index_python")
    code = copy_package(tmp_path / "code")
    prefix = tmp_path / "ws_install"
    share = copy_share(prefix / "share" / "cigocc_ros")
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "cigocc_ros").write_text("")
    out = run_probe(code, tmp_path, AMENT_PREFIX_PATH=str(prefix))
    assert out["node_params"] == str(share / "config" / "cigocc.yaml")
    assert out["rviz"] == str(share / "rviz" / "cigocc.rviz")
    assert out["weights"] == str(share / "weights" / resources.SHIPPED_WEIGHTS)
    assert out["class_table"] == str(code / "cigocc_ros" / "semantic-kitti.yaml")


def test_package_data_needs_no_share(tmp_path):
    """The package alone (no share folder anywhere, e.g. a wheel's code without its data files):
    experiment configs, class table and message definition still load, and only a share file
    fails, naming where it looked."""
    code = copy_package(tmp_path / "code")
    script = ("import sys; from cigocc_ros.bag.types import typestore; from cigocc_ros.classes import load_class_table; "
             "from cigocc_ros.config import load_experiment; from cigocc_ros import resources\n"
             "print(load_experiment('full', overlays=['real']).name, len(load_class_table().names), "
             "len(typestore().fielddefs) > 0, 'ament_index_python' in sys.modules)\n"
             "try:\n    resources.node_params_file()\nexcept resources.ResourceNotFound as e:\n    print(e)")
    res = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env=clean_env(PYTHONPATH=str(code), AMENT_PREFIX_PATH=""), timeout=120)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.strip().splitlines()
    assert first == "full 20 True False"  # and no share lookup, so no ament index, on the way
    assert second.startswith("config/cigocc.yaml not found (searched: no share folder at all")


def test_environment_overrides_win(tmp_path):
    share = copy_share(tmp_path / "myshare")
    code = copy_package(tmp_path / "code")
    weights = tmp_path / "mine.safetensors"
    out = run_probe(code, tmp_path, CIGOCC_SHARE=str(share), CIGOCC_WEIGHTS=str(weights))
    assert out["node_params"] == str(share / "config" / "cigocc.yaml")
    assert out["weights"] == str(weights)  # named even though it does not exist: the caller says so


def test_nothing_found_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("CIGOCC_SHARE", str(tmp_path))
    with pytest.raises(resources.ResourceNotFound) as e:
        resources.find("config/nope.yaml")
    text = str(e.value)
    assert "config/nope.yaml not found" in text and f"$CIGOCC_SHARE {tmp_path}" in text
    assert f"checkout {REPO}" in text and "CIGOCC_SHARE" in text



def test_lookups_from_the_core_import_no_ros():
    """The core stays ROS-free: ament_index_python is imported only when a share lookup reaches
    the ament index (never from a checkout, never for package data)."""
    probe = ("import sys; from cigocc_ros import resources; from cigocc_ros.classes import load_class_table; "
             "from cigocc_ros.config import load_experiment; load_class_table(); load_experiment('lite'); "
             "resources.shipped_weights_file(); print(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('rclpy', 'ament_index_python')))")
    env = {k: v for k, v in os.environ.items() if k not in ("CIGOCC_SHARE", "CIGOCC_WEIGHTS")}
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
