"""Training the model: the run loops (trainer, seg_trainer), the feature cache and the resumable
optimiser state (state); scoring is cigocc_ros/evaluation/. Imports the core, never ros/ or bag/."""
