"""SemanticKITTI file formats, the torch Dataset and the synthetic data generator (no ROS)."""
