"""rosbag2 tools (rosbags + rclpy; import the core, never ros/ or training/): messages.py (CDR
in and out), types.py (the type store), session.py (rclpy session, DDS profile, exit
conventions), kitti_to_bag.py (sequence folder -> bag), play.py (replay), score.py (scoring a
replay), demo.py (the demo pipeline). The commands are in cigocc_ros/cli/."""
