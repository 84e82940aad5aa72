"""rosbag2 tools: KITTI to bag, replay into a live graph, scoring a replay (rosbags + rclpy)."""
