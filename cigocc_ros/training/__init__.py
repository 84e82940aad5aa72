"""Training and evaluation of the model: the run loop (trainer), scoring on a split
(evaluation) and the resumable optimiser state (state). Imports the core, never ros/ or bag/."""
