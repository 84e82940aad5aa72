"""Where the package's share files are: the node's parameters, the RViz layout, the shipped weights.

setup.py installs `config/` (the node's ROS parameters), `rviz/`, `weights/` and `launch/` into
`share/cigocc_ros/`; a source checkout keeps them beside the `cigocc_ros/` package folder. Every
share file is looked up, in this order, in:

1. `$CIGOCC_SHARE` (a folder laid out like share/cigocc_ros), when set;
2. the checkout the code runs from (`<repo>/config`, ...): a source checkout, `pip install -e`
   and `colcon build --symlink-install` (whose Python package points back at the source);
3. the install prefix the code runs from (`<prefix>/lib/pythonX.Y/site-packages/cigocc_ros` ->
   `<prefix>/share/cigocc_ros`): a plain `colcon build` or a wheel installed with its data;
4. the ament index (`ament_index_python`, imported only here and only when a lookup reaches it,
   so the core never needs ROS): a share folder found through AMENT_PREFIX_PATH.

`$CIGOCC_WEIGHTS` names the shipped-weights file itself and wins over all of them.
A file found nowhere raises `ResourceNotFound`, which names every place that was searched.

The files the library reads for itself are package data instead, inside the Python package in
every install, so they need no search: the experiment configs (`cigocc_ros/experiments/`, read by
config.py), the class table (`cigocc_ros/semantic-kitti.yaml`, classes.py) and the message
definition the bag tools register (`cigocc_ros/bag/SemanticOccupancy.msg`, bag/types.py).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "cigocc_ros"
SHIPPED_WEIGHTS = "cigocc_lite.safetensors"
NODE_PARAMS = Path("config") / "cigocc.yaml"
RVIZ_LAYOUT = Path("rviz") / "cigocc.rviz"

_PACKAGE_DIR = Path(__file__).resolve().parent


class ResourceNotFound(FileNotFoundError):
    """A share file of the package is in none of the searched share folders."""


def _checkout_root() -> Path | None:
    # The source checkout this package runs from (package.xml and config/ beside the package
    # folder), or None when it runs from an install.
    root = _PACKAGE_DIR.parent
    return root if (root / "package.xml").is_file() and (root / "config").is_dir() else None


def _prefix_share() -> Path | None:
    # <prefix>/lib/pythonX.Y/site-packages/cigocc_ros -> <prefix>/share/cigocc_ros
    parents = _PACKAGE_DIR.parents
    if len(parents) > 3 and parents[0].name in ("site-packages", "dist-packages"):
        share = parents[3] / "share" / PACKAGE
        return share if share.is_dir() else None
    return None


def _ament_share() -> Path | None:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH
        return None


def _roots() -> Iterator[tuple[str, Path]]:
    """The search roots in order, computed lazily: a lookup that the checkout answers never
    imports ament_index_python."""
    seen: list[Path] = []
    candidates = [("$CIGOCC_SHARE", lambda: Path(os.environ["CIGOCC_SHARE"]).expanduser()
                   if os.environ.get("CIGOCC_SHARE") else None),
                  ("checkout", _checkout_root), ("install prefix", _prefix_share), ("ament index", _ament_share)]
    for origin, find_root in candidates:
        root = find_root()
        if root is not None and root not in seen:
            seen.append(root)
            yield origin, root


def search_roots() -> list[tuple[str, Path]]:
    """The folders searched, in order, each with what it is: [(origin, folder), ...]."""
    return list(_roots())


def find(relative: str | Path) -> Path:
    """The first existing `<root>/relative` over `search_roots()`, else ResourceNotFound."""
    for _, root in _roots():
        path = root / relative
        if path.exists():
            return path
    roots = search_roots()
    where = "; ".join(f"{origin} {root}" for origin, root in roots) or "no share folder at all"
    raise ResourceNotFound(f"{relative} not found (searched: {where}; set CIGOCC_SHARE to the share folder)")


def node_params_file() -> Path:
    """The node's default ROS parameter file (config/cigocc.yaml)."""
    return find(NODE_PARAMS)


def rviz_layout_file() -> Path:
    """The RViz layout of the launch file's rviz:=true (rviz/cigocc.rviz)."""
    return find(RVIZ_LAYOUT)


def shipped_weights_file() -> Path:
    """$CIGOCC_WEIGHTS when set (returned even if missing, so the caller's error names it),
    else weights/cigocc_lite.safetensors from the search roots."""
    if os.environ.get("CIGOCC_WEIGHTS"):
        return Path(os.environ["CIGOCC_WEIGHTS"]).expanduser()
    return find(Path("weights") / SHIPPED_WEIGHTS)
