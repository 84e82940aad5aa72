"""ament_python set-up of cigocc_ros: the Python package with its package data (experiment
configs, class table, message definition), its console entry points, and the ROS-facing files
installed into share/cigocc_ros: launch/, config/ (node parameters), rviz/, weights/ (found by
cigocc_ros/resources.py)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cigocc_ros"


def share(pattern):
    # Files only: a folder (weights/seg2d/, a training run's logs and reports) is no data file.
    return sorted(f for f in glob(pattern) if os.path.isfile(f) and not f.endswith(".gitkeep"))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", share("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", share("config/*.yaml")),
        (f"share/{PACKAGE}/rviz", share("rviz/*.rviz")),
        (f"share/{PACKAGE}/weights", share("weights/*")),
        (f"share/{PACKAGE}/weights/seg2d", share("weights/seg2d/*")),
    ],
    # Read by the library itself, so they travel inside the package (every install, no lookup).
    # bag/SemanticOccupancy.msg links to msg/msg/: the build copies its content.
    package_data={PACKAGE: ["py.typed", "semantic-kitti.yaml", "ATTRIBUTION.md", "experiments/*.yaml",
                            "bag/SemanticOccupancy.msg"]},
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="cigocc_ros developers",
    maintainer_email="cigocc@example.com",
    description="CIGOcc camera-based 3D semantic occupancy prediction as a ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "cigocc_node = cigocc_ros.ros.main:main",
            "cigocc = cigocc_ros.cli.main:main",
        ],
    },
)
