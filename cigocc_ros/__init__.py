"""cigocc_ros: CIGOcc semantic occupancy from camera images (core library + ROS 2 adapter)."""
__version__ = "0.1.0"
