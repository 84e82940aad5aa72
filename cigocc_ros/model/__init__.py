"""The CIGOcc network (pure PyTorch, importable without ROS)."""
