"""Measuring: how a prediction is scored and against what (the 2D segmentation report)."""
