"""The ROS 2 adapter: a thin node around the core (cigocc_ros.inference)."""
