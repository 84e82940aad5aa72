"""cigocc_ros.resources finds the package's files the same way from a checkout, a plain install
prefix (what `colcon build` without --symlink-install makes), the ament index and $CIGOCC_SHARE.

The install layouts are made by copying the package (no build: fast); test_packaging.py builds a
real workspace and runs the installed node."""
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
from cigocc_ros.classes import load_class_table
from cigocc_ros.config import load_experiment, load_node_config
print(json.dumps({
    "package": resources.__file__,
    "class_table": str(resources.class_table_file()),
    "lite": str(resources.experiment_file("lite")),
    "weights": str(resources.shipped_weights_file()),
    "rviz": str(resources.rviz_layout_file()),
    "classes": len(load_class_table().names),
    "experiment": load_experiment("lite").name,
    "device": load_node_config().device,
}))
"""


def copy_share(dest: Path) -> Path:
    """What setup.py's data_files put into share/cigocc_ros."""
    for folder in ("config", "weights"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns(".gitkeep"))
    return dest


def copy_package(site: Path) -> Path:
    shutil.copytree(REPO / "cigocc_ros", site / "cigocc_ros", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_probe(pythonpath: Path, cwd: Path, **env) -> dict:
    import json

    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIGOCC_SHARE", "CIGOCC_WEIGHTS")}
    # -I would also drop the venv's site-packages; -P keeps cwd off sys.path, PYTHONPATH leads.
    res = subprocess.run([sys.executable, "-P", "-c", PROBE], cwd=cwd, capture_output=True, text=True,
                         env=base | {"PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"} | env, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_checkout_finds_its_own_files():
    assert resources.class_table_file() == REPO / "config" / "semantic-kitti.yaml"
    assert resources.experiment_file("full") == REPO / "config" / "full.yaml"
    assert resources.node_params_file() == REPO / "config" / "cigocc.yaml"
    assert resources.rviz_layout_file() == REPO / "config" / "cigocc.rviz"
    assert resources.search_roots()[0] == ("checkout", REPO)


def test_plain_install_prefix_finds_share(tmp_path):
    """The layout of `colcon build` without --symlink-install: code in
    <prefix>/lib/pythonX.Y/site-packages, files in <prefix>/share/cigocc_ros. The old lookup
    (config/ beside the package folder) failed here: the node could not read its class table."""
    prefix = tmp_path / "install" / "cigocc_ros"
    site = copy_package(prefix / "lib" / PY / "site-packages")
    share = copy_share(prefix / "share" / "cigocc_ros")
    out = run_probe(site, tmp_path, AMENT_PREFIX_PATH="")
    assert out["package"].startswith(str(site))
    assert out["class_table"] == str(share / "config" / "semantic-kitti.yaml")
    assert out["lite"] == str(share / "config" / "lite.yaml")
    assert out["weights"] == str(share / "weights" / resources.SHIPPED_WEIGHTS)
    assert out["rviz"] == str(share / "config" / "cigocc.rviz")
    assert (out["classes"], out["experiment"], out["device"]) == (20, "lite", "auto")


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
    assert out["class_table"] == str(share / "config" / "semantic-kitti.yaml")
    assert out["weights"] == str(share / "weights" / resources.SHIPPED_WEIGHTS)


def test_environment_overrides_win(tmp_path):
    share = copy_share(tmp_path / "myshare")
    code = copy_package(tmp_path / "code")
    weights = tmp_path / "mine.safetensors"
    out = run_probe(code, tmp_path, CIGOCC_SHARE=str(share), CIGOCC_WEIGHTS=str(weights))
    assert out["class_table"] == str(share / "config" / "semantic-kitti.yaml")
    assert out["weights"] == str(weights)  # named even though it does not exist: the caller says so


def test_nothing_found_names_every_place_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("CIGOCC_SHARE", str(tmp_path))
    with pytest.raises(resources.ResourceNotFound) as e:
        resources.config_file("nope.yaml")
    text = str(e.value)
    assert "config/nope.yaml not found" in text and f"$CIGOCC_SHARE {tmp_path}" in text
    assert f"checkout {REPO}" in text and "CIGOCC_SHARE" in text



def test_lookups_from_the_core_import_no_ros():
    """The core stays ROS-free: ament_index_python is imported only when a lookup reaches the
    ament index (never from a checkout)."""
    probe = ("import sys; from cigocc_ros import resources; from cigocc_ros.classes import load_class_table; "
             "from cigocc_ros.config import load_experiment; load_class_table(); load_experiment('lite'); "
             "resources.shipped_weights_file(); print(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('rclpy', 'ament_index_python')))")
    env = {k: v for k, v in os.environ.items() if k not in ("CIGOCC_SHARE", "CIGOCC_WEIGHTS")}
    res = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
