"""Measuring: how a prediction is scored and against what. Core (imports no training/, ros/,
bag/ or cli/ code).

- ssc_metric:  the official SemanticKITTI completion metric (SSCMetric, format_rows)
- split:       a model, checkpoint or submission scored on a split, with the controls beside it
- controls:    the trivial predictors every evaluation prints (flat ground, voxel prior,
               shuffled image, stereo + height rule) and the checks against them
- lidar:       real-frame figures of a prediction against the frame's labelled LiDAR scan
- real_report: the real-frame report's loop (model and controls over sequence folders)
- segmentation: the 2D report (CamVid pixels, KITTI LiDAR pixels) beside a location prior
"""
